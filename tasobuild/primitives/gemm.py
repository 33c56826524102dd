"""The shared SGEMM (kernels_pyx/gemm.c) as the registry sees it: its micro-tile and cache blocks, its packed-panel
operand formats and its workspace. Every GEMM-based conv family packs weights and sizes workspace through these;
tests/test_gemm.py checks they agree with tb_gemm.h.
"""

from __future__ import annotations

import numpy as np

# tb_gemm.h: micro-tile MR x NR, cache blocks KC (depth), MC (rows), NC (columns); a depth up to KC_WHOLE is one block.
GEMM_MR, GEMM_NR, GEMM_KC, GEMM_MC, GEMM_NC = 6, 16, 384, 96, 4080
GEMM_KC_WHOLE = 512


def depth_block(depth: int) -> int:
    """tb_gemm_kc: the depth of the GEMM's k-blocks (and of its packing workspace) for a product of this depth."""
    return depth if depth <= GEMM_KC_WHOLE else GEMM_KC


def round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def pack_a(a: np.ndarray) -> np.ndarray:
    """A[M][K] as MR-row panels: panel p holds A[p*MR + r][k] at p*K*MR + k*MR + r (rows past M zero)."""
    rows, depth = a.shape
    padded = np.zeros((round_up(rows, GEMM_MR), depth), np.float32)
    padded[:rows] = a
    return np.ascontiguousarray(padded.reshape(-1, GEMM_MR, depth).transpose(0, 2, 1)).reshape(-1)


def pack_b(b: np.ndarray) -> np.ndarray:
    """B[K][N] as NR-column panels: panel q holds B[k][q*NR + c] at q*K*NR + k*NR + c (columns past N zero)."""
    depth, cols = b.shape
    padded = np.zeros((depth, round_up(cols, GEMM_NR)), np.float32)
    padded[:, :cols] = b
    return np.ascontiguousarray(padded.reshape(depth, -1, GEMM_NR).transpose(1, 0, 2)).reshape(-1)


def gemm_workspace_floats(rows: int, cols: int, depth: int, a_packed: bool, b_packed: bool) -> int:
    """tb_gemm's workspace for a rows x cols x depth product: the packing of one cache block of each operand that
    is not pre-packed."""
    kc = depth_block(depth)
    a = 0 if a_packed else round_up(min(GEMM_MC, rows), GEMM_MR) * kc
    b = 0 if b_packed else kc * round_up(min(GEMM_NC, cols), GEMM_NR)
    return a + b
