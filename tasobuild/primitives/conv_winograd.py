"""Winograd convolution primitives: F(2x2,3x3), F(3x3,3x3), F(4x4,3x3), F(2x2,5x5), F(3x3,5x5), CHW and HWC.

For stride-1, dilation-1, ungrouped convs with the variant's square kernel (any padding). The output is cut into
m x m tiles; each reads an alpha x alpha input tile (alpha = m + r - 1). Per block of tiles the kernel (1) transforms
the input tiles, V = BT d B, into the workspace, (2) runs alpha^2 GEMMs over the input channels with the shared
tb_gemm, one per transformed-tile element xi, Y_xi[tile][m] = V_xi . U_xi^T, the transformed weights U = G g GT
packed as the GEMM's B operand at build time (the same format in both layouts), and (3) inverse-transforms,
AT Y A, into the output with bias and activation.

The matrices come from Cook-Toom interpolation at the `points` below (plus infinity), built exactly in fractions and
checked against the definition of correlation; the points were chosen by simulated float32 error (mixing 2 and -1/2
gives F(4x4,3x3) about half the error of Lavin's 0, +-1, +-2). Every coefficient of AT and BT is a dyadic rational,
exact in float. The C transforms in kernels_pyx/tb_winograd_tf.h are rendered from the same matrices by
`render_transforms()` (a test checks the file is up to date).

Two primitives per variant and layout: the default one processes `WINO_BLOCK` (96) tiles per block, the "lowmem" one
`WINO_LOWMEM_BLOCK` (12), registered only where its workspace is smaller. Neither dominates: the big block reads the
weights fewer times (deep layers with few tiles), the small one keeps the transformed block in L2 (wide layers).

Accuracy, max error / max |float64 reference| on He-normal layers of 64..512 channels (C kernels):
F(2x2,3x3) <= 6e-7, F(3x3,3x3) and F(4x4,3x3) <= 5e-6, F(2x2,5x5) <= 3e-6, F(3x3,5x5) <= 1e-5 (256 channels);
tests/test_winograd.py bounds every variant by `ERROR_BOUND`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from tasobuild.ir import Layout
from tasobuild.primitives import Primitive
from tasobuild.primitives.conv_table import CONV_HEADERS, ConvGeometry, ConvRow, conv_primitive
from tasobuild.primitives.gemm import GEMM_MC, GEMM_MR, GEMM_NR, depth_block, pack_b, round_up

# kernels_pyx/tb_winograd.h: tiles per block of the default and the low-memory kernels.
WINO_BLOCK, WINO_LOWMEM_BLOCK = 96, 12
ERROR_BOUND = 2e-5  # per layer, relative to max |reference|; the end-to-end tolerance is 1e-4
SOURCES = ("conv_winograd.c", "tb_winograd.h", "tb_winograd_tf.h", "gemm.c") + CONV_HEADERS

Matrix = tuple[tuple[Fraction, ...], ...]
HALF = Fraction(1, 2)


# ---------------------------------------------------------------------------------------------- the mathematics


@dataclass(frozen=True)
class WinogradVariant:
    """F(m x m, r x r) with its finite interpolation points (infinity is always the last point)."""

    m: int
    r: int
    points: tuple[Fraction, ...]

    @property
    def alpha(self) -> int:
        return self.m + self.r - 1

    @property
    def name(self) -> str:
        return f"f{self.m}x{self.m}_{self.r}x{self.r}"

    @property
    def lanes(self) -> int:
        """How many tiles (CHW) or channels (HWC) one transform call handles: one AVX-512 vector, or half of one
        where a 16-lane alpha x alpha tile would not fit the kernels' 4 KiB stack."""
        return 16 if self.alpha <= 6 else 8

    def matrices(self) -> tuple[Matrix, Matrix, Matrix]:
        """(AT [m][alpha], G [alpha][r], BT [alpha][alpha]), exact."""
        return cook_toom(self.m, self.r, self.points)


VARIANTS: tuple[WinogradVariant, ...] = (
    WinogradVariant(2, 3, (Fraction(0), Fraction(1), Fraction(-1))),
    WinogradVariant(3, 3, (Fraction(0), Fraction(1), Fraction(-1), Fraction(-2))),
    WinogradVariant(4, 3, (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), -HALF)),
    WinogradVariant(2, 5, (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), -HALF)),
    WinogradVariant(3, 5, (Fraction(0), Fraction(1), Fraction(-1), Fraction(2), Fraction(-2), HALF)),
)


def _poly_from_roots(roots: list[Fraction]) -> list[Fraction]:
    """Coefficients, lowest power first, of prod (x - root)."""
    coeffs = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0)] + coeffs  # x * p(x)
        coeffs = [s - root * c for s, c in zip(shifted, coeffs + [Fraction(0)])]
    return coeffs


@functools.cache
def cook_toom(m: int, r: int, points: tuple[Fraction, ...]) -> tuple[Matrix, Matrix, Matrix]:
    """The Winograd/Cook-Toom matrices of F(m, r) at `points` + infinity, with y = AT [(G g) * (BT d)].

    Linear convolution of polynomials evaluated at the points (and the leading coefficient, 'infinity'), multiplied
    and interpolated back, transposed into correlation: AT holds the powers of the points, G the kernel's values
    at them divided by prod (a_q - a_k), BT the Lagrange numerators prod_{k != q} (x - a_k) and prod (x - a_k)."""
    n = m + r - 1
    assert len(points) == n - 1 and len(set(points)) == n - 1, "alpha - 1 distinct finite points"
    at = tuple(tuple(a ** i for a in points) + (Fraction(int(i == m - 1)),) for i in range(m))
    g, bt = [], []
    for q, a in enumerate(points):
        others = [b for k, b in enumerate(points) if k != q]
        scale = Fraction(1)
        for b in others:
            scale *= a - b
        g.append(tuple(a ** k / scale for k in range(r)))
        bt.append(tuple(_poly_from_roots(others)) + (Fraction(0),))
    g.append(tuple(Fraction(int(k == r - 1)) for k in range(r)))
    bt.append(tuple(_poly_from_roots(list(points))))
    for i in range(m):  # exactly correlation: y_i = sum_k g_k d_{i+k}
        for k in range(r):
            for j in range(n):
                assert sum(at[i][q] * g[q][k] * bt[q][j] for q in range(n)) == int(j == i + k)
    return at, tuple(g), tuple(bt)


def _f64(matrix: Matrix) -> np.ndarray:
    return np.array([[float(v) for v in row] for row in matrix], dtype=np.float64)


def transformed_weights(w: np.ndarray, variant: WinogradVariant) -> np.ndarray:
    """U[xi][m][c] = (G W[m][c] GT)[i][j], xi = i*alpha + j, computed in float64 and rounded once."""
    _, g, _ = variant.matrices()
    g64 = _f64(g)
    u: np.ndarray = np.einsum("ik,mckl,jl->ijmc", g64, w.astype(np.float64), g64)
    return u.reshape(variant.alpha ** 2, w.shape[0], w.shape[1]).astype(np.float32)


# ---------------------------------------------------------------------------------------------- C rendering


def _expression(row: tuple[Fraction, ...], names: list[str]) -> str:
    """sum row[k] * names[k] as C, skipping zeros and multiplications by +-1 (every coefficient is exact in float)."""
    terms = []
    for coeff, name in zip(row, names):
        if coeff == 0:
            continue
        value = float(coeff)
        assert Fraction(float(np.float32(value))) == coeff, f"coefficient {coeff} is not exact in float32"
        magnitude = "" if abs(coeff) == 1 else f"{abs(value)!r}f * "
        terms.append(("- " if coeff < 0 else "+ ") + magnitude + name)
    text = " ".join(terms) or "0.0f"
    return text[2:] if text.startswith("+ ") else "-" + text[2:]


def _render_variant(v: WinogradVariant) -> str:
    at, _, bt = v.matrices()
    a, mo, lanes, p = v.alpha, v.m, v.lanes, f"tb_wino_{v.name}"
    vec, step = f"tb_wv{lanes}", f"TB_WV{lanes}_STEP"
    points = ", ".join(str(x) for x in v.points)

    def body(matrix: Matrix, load: Callable[[int], str], store: Callable[[int, str], str]) -> list[str]:
        names = [f"x{k}" for k in range(len(matrix[0]))]
        loads = [f"{n} = {vec}_ld({load(k)})" for k, n in enumerate(names)]
        lines = [f"        const {vec} " + ", ".join(loads[k:k + 2]) + ";" for k in range(0, len(loads), 2)]
        return lines + [f"        {store(i, _expression(row, names))};" for i, row in enumerate(matrix)]

    def loop(lines: list[str]) -> list[str]:
        return [f"    for (l = 0; l < {lanes}; l += {step}) {{", *lines, "    }"]

    out = [f"/* F({mo}x{mo},{v.r}x{v.r}): alpha {a}, points {points}, infinity; {lanes} lanes. */"]
    out += [f"TB_WINO_TF_INLINE void {p}_in_row(const float *restrict d, long ds, float *restrict r)", "{",
            "    int l;"]
    out += loop(body(bt, lambda k: f"d + {k} * ds + l",
                     lambda i, e: f"{vec}_st(r + {i * lanes} + l, {e})"))
    out += ["}", ""]
    out += [f"TB_WINO_TF_INLINE void {p}_in_col(const float *restrict r, float *restrict v, long vs)", "{",
            "    int j, l;", f"    for (j = 0; j < {a}; ++j)"]
    out += ["    " + line for line in loop(body(bt, lambda k: f"r + ({k * a} + j) * {lanes} + l",
                                              lambda i, e: f"{vec}_st(v + ({i * a} + j) * vs + l, {e})"))]
    out += ["}", ""]
    out += [f"TB_WINO_TF_INLINE void {p}_out_col(const float *restrict y, long ys, float *restrict r)", "{",
            "    int j, l;", f"    for (j = 0; j < {a}; ++j)"]
    out += ["    " + line for line in loop(body(at, lambda k: f"y + ({k * a} + j) * ys + l",
                                              lambda i, e: f"{vec}_st(r + ({i * a} + j) * {lanes} + l, {e})"))]
    out += ["}", ""]
    out += [f"TB_WINO_TF_INLINE void {p}_out_row(const float *restrict r, float *restrict o)", "{", "    int i, l;",
            f"    for (i = 0; i < {mo}; ++i)"]
    out += ["    " + line for line in loop(body(at, lambda k: f"r + (i * {a} + {k}) * {lanes} + l",
                                              lambda j, e: f"{vec}_st(o + (i * {mo} + {j}) * {lanes} + l, {e})"))]
    out += ["}", ""]
    out += [f"static const tb_wino_variant {p} = {{{VARIANTS.index(v)}, {a}, {mo}, {lanes}}};", ""]
    return "\n".join(out)


# The transforms by variant id: a constant id (the kernels inline everything) leaves one direct, inlined call.
_DISPATCH = (("in_row", "const float *restrict d, long ds, float *restrict r", "d, ds, r"),
             ("in_col", "const float *restrict r, float *restrict v, long vs", "r, v, vs"),
             ("out_col", "const float *restrict y, long ys, float *restrict r", "y, ys, r"),
             ("out_row", "const float *restrict r, float *restrict o", "r, o"))


def _render_dispatch() -> str:
    out = []
    for op, params, args in _DISPATCH:
        out += [f"TB_WINO_TF_INLINE void tb_wino_{op}(int id, {params})", "{", "    switch (id) {"]
        out += [f"    case {k}: tb_wino_{v.name}_{op}({args}); break;" for k, v in enumerate(VARIANTS)]
        out += ["    default: break;", "    }", "}", ""]
    return "\n".join(out)


# One vector of `lanes` floats: a GCC/Clang vector on AVX-512 (a zmm whatever -mprefer-vector-width says), else a
# plain float stepped lane by lane, left to the auto-vectoriser (lowered to narrower SIMD, AVX2's or NEON's, the
# 16-float vectors of a whole tile spill: frames of 4.5 KiB, past the stack rule). Loads and stores are
# macros through a float-aligned, may_alias type (the operands are only float-aligned; a function taking or
# returning a vector would change the ABI where the ISA lacks it). Lane-wise: the bits are those of scalar code.
_VECTOR_TYPES = """#if defined(__GNUC__) && defined(__AVX512F__)
#define TB_WINO_TF_INLINE static inline __attribute__((always_inline))
typedef float tb_wv16 __attribute__((vector_size(64), aligned(4), may_alias));
typedef float tb_wv8 __attribute__((vector_size(32), aligned(4), may_alias));
#define TB_WV_VECTORS 1
#define TB_WV16_STEP 16
#define TB_WV8_STEP 8
#define tb_wv16_ld(p) (*(const tb_wv16 *)(p))
#define tb_wv16_st(p, x) (*(tb_wv16 *)(p) = (x))
#define tb_wv8_ld(p) (*(const tb_wv8 *)(p))
#define tb_wv8_st(p, x) (*(tb_wv8 *)(p) = (x))
#else
#define TB_WINO_TF_INLINE static
typedef float tb_wv16;
typedef float tb_wv8;
#define TB_WV16_STEP 1
#define TB_WV8_STEP 1
#define tb_wv16_ld(p) (*(p))
#define tb_wv16_st(p, x) (*(p) = (x))
#define tb_wv8_ld(p) (*(p))
#define tb_wv8_st(p, x) (*(p) = (x))
#endif
"""


def render_transforms() -> str:
    """kernels_pyx/tb_winograd_tf.h: the transforms of every variant as straight-line C over `lanes` lanes."""
    head = [
        "/* Generated by tasobuild/primitives/conv_winograd.py (render_transforms) from the exact Cook-Toom matrices:",
        " * do not edit. Per variant, over `lanes` independent lanes (channels), one vector of them at a time, lane l",
        " * of element k at k * lanes + l unless a stride is given:",
        " *   in_row:  r[j] = sum_k BT[j][k] d[k * ds]             (one input tile row, d B)",
        " *   in_col:  v[(i*alpha + j) * vs] = sum_k BT[i][k] r[k][j] (BT (d B), to the GEMM operands)",
        " *   out_col: r[i][j] = sum_k AT[i][k] y[(k*alpha + j) * ys] (AT Y, from the GEMM results)",
        " *   out_row: o[i][j] = sum_k AT[j][k] r[i][k]              ((AT Y) A, the m x m output tile) */",
        "#ifndef TB_WINOGRAD_TF_H",
        "#define TB_WINOGRAD_TF_H",
        "",
        _VECTOR_TYPES,
        "typedef struct {",
        "    int id, alpha, m, lanes; /* id: which transforms tb_wino_in_row etc. run */",
        "} tb_wino_variant;",
        "",
    ]
    variants = "\n".join(_render_variant(v) for v in VARIANTS)
    return "\n".join(head) + "\n" + variants + "\n" + _render_dispatch() + "#endif\n"


# ------------------------------------------------------------------------------------------------ the registry


def tiles(geo: ConvGeometry, v: WinogradVariant) -> int:
    return -(-geo.oh // v.m) * -(-geo.ow // v.m)


def block_tiles(geo: ConvGeometry, v: WinogradVariant, lowmem: bool) -> int:
    return min(tiles(geo, v), WINO_LOWMEM_BLOCK if lowmem else WINO_BLOCK)


def workspace_floats(geo: ConvGeometry, v: WinogradVariant, lowmem: bool) -> int:
    """tb_winograd.h's formula: a scratch tile for the transforms, the transformed input and the GEMM results of one
    block of tiles (channel counts rounded up to whole lanes), and tb_gemm's packing of one block of the input."""
    block, aa = block_tiles(geo, v, lowmem), v.alpha ** 2
    gemm = round_up(min(GEMM_MC, block), GEMM_MR) * depth_block(geo.c)
    return 2 * aa * v.lanes + aa * block * (round_up(geo.c, v.lanes) + round_up(geo.m, v.lanes)) + gemm


def weight_floats(geo: ConvGeometry, v: WinogradVariant) -> int:
    return v.alpha ** 2 * geo.c * round_up(geo.m, GEMM_NR)


def packed_weights(w: np.ndarray, v: WinogradVariant) -> np.ndarray:
    """Per xi, U_xi^T [C][M] as GEMM B panels, one after another (the same in both layouts)."""
    u = transformed_weights(w, v)
    return np.ascontiguousarray(np.concatenate([pack_b(ux.T) for ux in u]), np.float32)


def fits(geo: ConvGeometry, v: WinogradVariant) -> bool:
    """Stride 1, dilation 1, groups 1 and the variant's r x r kernel."""
    return ((geo.kh, geo.kw) == (v.r, v.r) and (geo.sh, geo.sw, geo.dh, geo.dw) == (1, 1, 1, 1)
            and geo.groups == 1)


def _applies(geo: ConvGeometry, v: WinogradVariant, lowmem: bool) -> bool:
    """A low-memory variant only where it needs less workspace than the default (else it is the same kernel)."""
    if not fits(geo, v):
        return False
    return not lowmem or workspace_floats(geo, v, True) < workspace_floats(geo, v, False)


def primitive_name(v: WinogradVariant, layout: Layout, lowmem: bool) -> str:
    return f"conv_winograd_{v.name}{'_lowmem' if lowmem else ''}_{layout.lower()}"


def _row(v: WinogradVariant, layout: Layout, lowmem: bool) -> ConvRow:
    return ConvRow(primitive_name(v, layout, lowmem), "winograd", layout, layout, SOURCES,
                   applies=functools.partial(_applies, v=v, lowmem=lowmem),
                   workspace_floats=functools.partial(workspace_floats, v=v, lowmem=lowmem),
                   transform=functools.partial(_transform, v=v), weight_floats=functools.partial(weight_floats, v=v))


def _transform(w: np.ndarray, geo: ConvGeometry, v: WinogradVariant) -> np.ndarray:
    return packed_weights(w, v)


PRIMITIVES: tuple[Primitive, ...] = tuple(
    conv_primitive(_row(v, layout, lowmem)) for layout in ("CHW", "HWC") for v in VARIANTS for lowmem in (False, True))
