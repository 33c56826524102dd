"""What a program needs of the device, estimated before compiling: RAM (the arena, the stack, static data) and flash
(code, weights). The weights and the arena are exact; code and static data are estimates that err on the large side
(BENCHMARKS.md, "Embedded targets", compares them with `arm-none-eabi-size`)."""

from __future__ import annotations

from dataclasses import dataclass

from tasobuild.emit.program import Program
from tasobuild.memory import ARENA_ALIGN

# Code: the runner (startup, semihosting or stdio, main) and what the C library brings (libm's expf, memcpy, ...);
# each kernel source the plan uses; each call (its argument block in flash and the call itself). Measured with
# arm-none-eabi-gcc -O2 on the zoo's plans and rounded up (BENCHMARKS.md, "Embedded targets").
CODE_BASE_BYTES = 6 * 1024
CODE_PER_KERNEL_FILE_BYTES = 3 * 1024
CODE_PER_CALL_BYTES = 160
# Kernel files whose SIMD path for a core is far larger than that: the M55's Helium 3x3 depthwise path, written out
# for both strides (29 KiB of .text against 3 KiB for the M4's).
SIMD_KERNEL_FILE_BYTES = {("conv_depthwise.c", "-mcpu=cortex-m55"): 30 * 1024}

# Static data besides the arena: the C library's (newlib's reentrancy structure, which libm's error paths reach).
STATIC_BASE_BYTES = 1536


@dataclass(frozen=True)
class Footprint:
    """Bytes of RAM and flash a program needs, by part."""

    arena_bytes: int  # with the slack that aligns its start
    stack_bytes: int
    static_bytes: int
    code_bytes: int
    weight_bytes: int

    @property
    def ram_bytes(self) -> int:
        return self.arena_bytes + self.stack_bytes + self.static_bytes

    @property
    def flash_bytes(self) -> int:
        return self.code_bytes + self.weight_bytes


def reserved_ram_bytes(stack_bytes: int) -> int:
    """RAM the program needs besides its arena: with no budget in the spec, the device's RAM less this is the
    budget."""
    return stack_bytes + STATIC_BASE_BYTES + ARENA_ALIGN


def estimate(p: Program, stack_bytes: int) -> Footprint:
    """The footprint of `p` with `stack_bytes` of stack. A hosted runner also keeps the input and output in arrays of
    its own; a bare-metal one reads and writes them in the arena."""
    # the hosted runner's arrays are float32 even for int8 I/O (it reads and writes float files)
    io_bytes = 0 if p.toolchain.bare_metal is not None else 4 * (p.input_total + p.output_total)
    cpus = [flag for flag in p.toolchain.cflags if flag.startswith("-mcpu=")]
    kernel_code = sum(SIMD_KERNEL_FILE_BYTES.get((f, cpus[-1] if cpus else ""), CODE_PER_KERNEL_FILE_BYTES)
                       for f in p.kernel_sources if f.endswith(".c"))
    calls = sum(len(step.calls) for step in p.steps)
    code = CODE_BASE_BYTES + kernel_code + calls * CODE_PER_CALL_BYTES
    return Footprint(arena_bytes=p.arena_bytes + ARENA_ALIGN, stack_bytes=stack_bytes,
                     static_bytes=STATIC_BASE_BYTES + io_bytes, code_bytes=code, weight_bytes=p.weight_bytes)
