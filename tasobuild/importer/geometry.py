"""Sliding-window arithmetic of Conv and pooling along one spatial axis, exactly as ONNX Runtime computes it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    out: int  # output extent
    pad_begin: int
    pad_end: int  # includes the ceil-mode overhang, so `out` follows from the floor formula with these pads
    overhang: int  # how much of pad_end is ceil-mode overhang (not declared padding)
    dropped: bool  # ceil mode's "last window must start inside the input" rule fired (ORT/PyTorch; ONNX's
    #               shape inference of older opsets does not apply it, so its shapes differ downstream)


def window(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int,
           auto_pad: str = "NOTSET", ceil: bool = False) -> Window:
    """Output extent and the explicit (possibly asymmetric) pads that reproduce it with the floor formula."""
    span = dilation * (kernel - 1) + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + span - size)
        small, big = total // 2, total - total // 2  # TF "same": the odd pixel goes at the end (SAME_UPPER)
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        return Window(out, begin, end, 0, False)
    if auto_pad == "VALID":
        if size < span:
            raise ValueError(f"window {span} larger than the input {size}")
        return Window((size - span) // stride + 1, 0, 0, 0, False)
    if auto_pad != "NOTSET":
        raise ValueError(f"unknown auto_pad '{auto_pad}'")
    room = size + pad_begin + pad_end - span
    if room < 0:
        raise ValueError(f"window {span} larger than the padded input {size + pad_begin + pad_end}")
    if not ceil:
        return Window(room // stride + 1, pad_begin, pad_end, 0, False)
    out = -(-room // stride) + 1
    dropped = (out - 1) * stride >= size + pad_begin  # the last window would start in the end padding
    if dropped:
        out -= 1
    reach = (out - 1) * stride + span - size - pad_begin  # end padding the last window reads
    if reach >= pad_end:
        return Window(out, pad_begin, reach, reach - pad_end, dropped)
    # the dropped window was the only one reading the tail of a (huge) end padding: trim it, so that the floor
    # formula gives `out` again; no window reads what is trimmed, so the result is the same
    end = pad_end if (size + pad_begin + pad_end - span) // stride + 1 == out else reach
    return Window(out, pad_begin, end, 0, dropped)
