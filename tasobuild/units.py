"""Sizes and durations as people write them ("64 KiB", "1.5 MB", "20 ms"), and back to text.

Sizes are whole bytes (int); durations are milliseconds (float). Arithmetic on the number
uses Fraction so "1.5 MB" is exactly 1_500_000 and "0.1 KiB" is rejected rather than rounded.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Unit spellings are matched case-insensitively: "kib", "KiB" and "KIB" all mean 1024 bytes.
# K/M/G alone follow the linker-script convention embedded engineers use (256K = 256 KiB).
_SIZE_UNITS: dict[str, int] = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "kb": 1000, "kib": 1024, "k": 1024,
    "mb": 1000**2, "mib": 1024**2, "m": 1024**2,
    "gb": 1000**3, "gib": 1024**3, "g": 1024**3,
}
_DURATION_UNITS_MS: dict[str, Fraction] = {
    "us": Fraction(1, 1000), "µs": Fraction(1, 1000), "μs": Fraction(1, 1000),
    "ms": Fraction(1), "s": Fraction(1000),
}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-zµμ]*)\s*$")

_SIZE_FORMS = '(e.g. "64 KiB", "1.5 MB"; units: B, KB, KiB, MB, MiB, GB, GiB)'
_DURATION_FORMS = '(e.g. "20 ms", "1.5 s"; units: us, ms, s)'


def parse_size(value: str | int) -> int:
    """Bytes in `value`: an int (bytes) or text such as "64 KiB", "64KiB", "1.5 MB", "65536"."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{value!r} is not a size {_SIZE_FORMS}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is not a size: sizes cannot be negative")
        return value
    match = _NUMBER_UNIT.match(value)
    unit = match and _SIZE_UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ValueError(f"{value!r} is not a size {_SIZE_FORMS}")
    size = Fraction(match.group(1)) * unit
    if size.denominator != 1:
        raise ValueError(f"{value!r} is not a whole number of bytes ({float(size):g} B)")
    return int(size)


def parse_duration(value: str) -> float:
    """Milliseconds in `value`, text such as "20 ms", "1.5 s", "250 us". A unit is required."""
    match = _NUMBER_UNIT.match(value) if isinstance(value, str) else None
    unit = match and _DURATION_UNITS_MS.get(match.group(2).lower())
    if not match or unit is None:
        raise ValueError(f"{value!r} is not a duration {_DURATION_FORMS}")
    return float(Fraction(match.group(1)) * unit)


def format_size(n: int, exact: bool = False) -> str:
    """Human text for `n` bytes: "64 KiB", "1.5 MiB", "48.83 KiB", "1000 B".

    With exact=True the text parses back to exactly `n` (parse_size), choosing the largest
    binary or decimal unit that needs at most two decimals: 50000 -> "50 KB", 1000 -> "1 KB".
    """
    if exact:
        for unit_name, unit in (("GiB", 1024**3), ("GB", 1000**3), ("MiB", 1024**2),
                                ("MB", 1000**2), ("KiB", 1024), ("KB", 1000)):
            value = Fraction(n, unit)
            if value >= 1 and (value * 100).denominator == 1:
                return f"{_decimal_text(value)} {unit_name}"
        return f"{n} B"
    for unit_name, unit in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= unit:
            return f"{_decimal_text(Fraction(n, unit))} {unit_name}"
    return f"{n} B"


def format_duration(ms: float) -> str:
    """Human text for a duration in milliseconds: "10 s", "20 ms", "1.25 ms", "250 us"."""
    if ms >= 1000:
        return f"{_decimal_text(Fraction(ms) / 1000, places=3)} s"
    if ms >= 1 or ms == 0:
        return f"{_decimal_text(Fraction(ms), places=3)} ms"
    return f"{_decimal_text(Fraction(ms) * 1000, places=3)} us"


def _decimal_text(value: Fraction, places: int = 2) -> str:
    """`value` rounded to `places` decimals without trailing zeros: 64 -> "64", 1.5 -> "1.5"."""
    text = f"{float(value):.{places}f}".rstrip("0").rstrip(".")
    return text
