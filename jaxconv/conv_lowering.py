"""How ``Conv2d`` turns into XLA operations: per layer shape, per pass (forward, dx, dW).

Why this exists: XLA:CPU lowers a convolution to Eigen's spatial convolution, which is fast for
the forward pass and the input gradient on feature maps of 4×4 and larger, but falls off its fast
path on 2×2 and 1×1 maps and is slow for the weight gradient (a convolution whose "kernel" is the
whole output map), while XLA's own float32 matmul is fast everywhere (the figures:
``benchmarks/README.md``, "Figures behind the code"; ``benchmarks/conv_layers.py`` re-measures
them). So a convolution is split into its three passes and each pass uses the lowering that is
fast for its shape (``plan``):
  * ``'xla'``: ``lax.conv_general_dilated`` (Eigen on CPU, cuDNN on GPU);
  * ``'im2col'``: gather the kh·kw shifted views of the padded input into one patch matrix and
    do a single matmul (K = kh·kw·C_in); its transpose (dx) is a matmul followed by a sum of
    shifted pads, its dW one matmul of the patches with dy;
  * ``'taps'``: one matmul per kernel tap on the shifted view, summed: no patch matrix, which
    saves memory traffic when the weight gradient's contraction (N·H·W) is long.
  * ``'s2d'``: space-to-depth, blocks of pixels stacked on channels, then XLA's convolution
    on many channels, which Eigen blocks where it cannot block a few (an autotune candidate);
  * ``'banded'``: the kernel's width written out as a banded matrix, so that each block of
    output columns is one matmul over kh input rows (K = kh·window·C_in, N = block·C_out): a
    conv with a few channels in (LeNet's, the 3-channel stems) gets matmul-wide K and N;
  * ``'col2im'``: taps on the output side, one matmul of x with every tap's kernel, then the
    tap products shifted and summed; its dW builds the patch matrix from dy, so a narrowing
    conv (DenseNet's 160 -> 32) gathers C_out channels per tap where im2col gathers C_in;
  * ``'direct'`` (shifted multiply-adds) and ``'grouped'`` (one batched matmul over groups).
Taps that only ever read padding are dropped (a 3×3 conv on a 1×1 map is one matmul with the
centre tap), which is exact: those products are all zeros.

The three passes are tied together with ``jax.custom_vjp``: each gradient is the exact
transpose of a convolution (computed by ``jax.vjp`` of the chosen lowering), so every plan
gives the same numbers up to float rounding order.

Which lowering each pass gets is decided by the *mode* (:func:`mode`), read when a function is
traced, so set it before ``jax.jit`` traces the model:
  * ``'heuristic'`` (the default): the fixed rules of :func:`cpu_plan` (no measuring);
  * ``'autotune'``: time every candidate on this machine the first time a shape is traced and
    keep the fastest, cached on disk (:mod:`jaxconv.conv_autotune`), as cuDNN's benchmark mode
    does. Not the default: a pass timed alone does not see what it costs inside the whole step,
    and on some networks the measured plan trains slower (``benchmarks/README.md``);
  * one lowering name: that lowering for every pass (benchmarks and tests).
Off CPU (GPU/TPU) every pass is ``'xla'`` unless a lowering is forced. A run can pin its plan
(:func:`fixed_plans`), so a resumed run computes with the plan its first part used.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

LOWERINGS = ('xla', 'im2col', 'taps', 'direct', 'grouped', 's2d', 'banded', 'col2im')
MODES = ('autotune', 'heuristic', *LOWERINGS)
#: The environment variable that sets the mode for a process (a ``lowering`` block overrides it).
MODE_ENV = 'JAXCONV_CONV_LOWERING'


class ConvSpec(NamedTuple):
    """The static geometry of one convolution (hashable: a ``custom_vjp`` static argument)."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


class Pass(NamedTuple):
    """A lowering for one pass, run on the whole batch or on ``chunk`` images at a time."""

    lowering: str
    chunk: int | None = None

    def __str__(self):
        return self.lowering if self.chunk is None else f'{self.lowering}[{self.chunk}]'

    @classmethod
    def parse(cls, text: str) -> Pass:
        """The inverse of ``str``: ``'im2col[32]'`` -> ``Pass('im2col', 32)``."""
        name, _, chunk = text.partition('[')
        if name not in LOWERINGS or (chunk and not chunk.rstrip(']').isdigit()):
            raise ValueError(f'not a conv pass lowering: {text!r}')
        return cls(name, int(chunk.rstrip(']')) if chunk else None)


class Plan(NamedTuple):
    """How each pass of one convolution is lowered."""

    fwd: Pass
    dx: Pass
    dw: Pass

    def __str__(self):
        return '/'.join(map(str, self))

    @classmethod
    def parse(cls, text: str) -> Plan:
        """The inverse of ``str``: ``'xla/taps/im2col[32]'``."""
        parts = text.split('/')
        if len(parts) != 3:
            raise ValueError(f'not a conv plan (fwd/dx/dw): {text!r}')
        return cls(*map(Pass.parse, parts))


# Thresholds of ``cpu_plan``: sized to a 2 MB L2 cache (benchmarks/README.md, "Figures behind
# the code"); ``autotune`` mode measures instead of trusting them.
PATCH_BUDGET_BYTES = 8 * 2**20  # an im2col patch-matrix chunk for dW on large maps
SMALL_VIEW_BYTES = 4 * 2**20  # one tap's view of the input: "small problem" below this
TAPS_MIN_CHANNELS = 64  # per-tap matmuls need K = C_in at least this wide
FEW_CHANNELS = 16  # below this many channels in, a per-tap matmul (K = C_in) is too narrow
XLA_DX_MIN_CHANNELS = 128  # a stride-1 widening conv's dx leaves XLA below this many C_in
IM2COL_DW_MIN_COUT = 64  # im2col's dW matmul has C_out columns; narrower, XLA's dW is faster
BANDED_COLUMNS = 64  # a banded matmul's N (block width x C_out) is at least about this wide
BANDED_MAX_COUT = 64  # from this many C_out, one output column already fills a matmul's N
BANDED_MAX_BYTES = 64 * 2**20  # its patch matrix (built once for forward and dW) or a chunk's
BANDED_ROW_BLOCKS = 2  # its matmul runs as a batch of this many row blocks (conv_banded)
COL2IM_MAX_COUT_PERCENT = 50  # col2im for a stride-1 conv with C_out <= this % of C_in ...
COL2IM_MAX_BYTES = 16 * 2**20  # ... whose tap products (N·H·W·taps·C_out) fit in this


class ConvCall(NamedTuple):
    """One convolution as traced: shapes, geometry and the plan it got."""

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    spec: ConvSpec
    plan: Plan
    dtype: str = 'float32'
    platform: str = 'cpu'

    @property
    def key(self) -> str:
        return shape_key(self.x_shape, self.w_shape, self.spec, self.dtype, self.platform)


def shape_key(x_shape, w_shape, spec: ConvSpec, dtype, platform: str) -> str:
    """A readable key for one convolution: what a plan is chosen (and cached) for."""
    dims = lambda v: 'x'.join(map(str, v))  # noqa: E731
    return (
        f'{dims(x_shape)}|{dims(w_shape)}|s{dims(spec.stride)}|p{dims(spec.padding)}'
        f'|d{dims(spec.dilation)}|g{spec.groups}|{jnp.dtype(dtype).name}|{platform}'
    )


_FORCED: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    'jaxconv_conv_lowering', default=None
)
_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    'jaxconv_conv_record', default=None
)
_FIXED: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    'jaxconv_conv_fixed', default=None
)


def mode() -> str:
    """The active mode: a ``lowering`` block's, else ``$JAXCONV_CONV_LOWERING``, else heuristic."""
    name = _FORCED.get() or os.environ.get(MODE_ENV) or 'heuristic'
    if name not in MODES:
        raise ValueError(
            f'unknown conv lowering mode {name!r} (from ${MODE_ENV} or lowering()); '
            f'choose one of {", ".join(MODES)}'
        )
    return name


@contextlib.contextmanager
def lowering(name: str | None):
    """Use mode ``name`` for every conv traced inside this block (None: the process default).

    ``name`` is ``'autotune'``, ``'heuristic'`` or one lowering, forced on every pass.
    """
    if name is not None and name not in MODES:
        raise ValueError(f'unknown conv lowering {name!r}; choose one of {MODES}')
    token = _FORCED.set(name)
    try:
        yield
    finally:
        _FORCED.reset(token)


@contextlib.contextmanager
def fixed_plans(table: dict[str, str]):
    """Inside this block a conv whose ``shape_key`` is in ``table`` gets that plan, whatever the
    mode: how a resumed run keeps the plan of the run it continues (a re-measure could pick
    another winner, and another lowering rounds differently)."""
    token = _FIXED.set({k: Plan.parse(v) for k, v in table.items()})
    try:
        yield
    finally:
        _FIXED.reset(token)


def plan_table(calls) -> dict[str, str]:
    """``{shape_key: plan}`` of recorded ``ConvCall``s (what a run writes down)."""
    return {c.key: str(c.plan) for c in calls}


@contextlib.contextmanager
def recording():
    """Collect a ``ConvCall`` for every convolution traced inside this block (a list)."""
    calls: list[ConvCall] = []
    token = _RECORD.set(calls)
    try:
        yield calls
    finally:
        _RECORD.reset(token)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------
def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _live_taps(size: int, k: int, s: int, p: int, d: int) -> list[int]:
    """Kernel taps that read at least one real (unpadded) input for some output position."""
    out = _out_size(size, k, s, p, d)
    return [i for i in range(k) if any(p <= i * d + s * o < p + size for o in range(out))]


# --------------------------------------------------------------------------------------------
# Lowerings. Each maps x (N, H, W, C_in) and w (kh, kw, C_in/groups, C_out) to y (N, H', W', C_out)
# with plain differentiable jax ops; their autodiff transposes are the dx / dW lowerings.
# --------------------------------------------------------------------------------------------
def conv_xla(x, w, spec: ConvSpec):
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=spec.stride,
        padding=[(p, p) for p in spec.padding],
        rhs_dilation=spec.dilation,
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        feature_group_count=spec.groups,
    )


def _shifted_views(x, w_shape, spec: ConvSpec):
    """The padded input's strided view under each live tap, and the live tap indices.

    ``x`` is (..., H, W, C): any leading axes (the batch, or groups and batch) are kept."""
    *lead, h, wd, c = x.shape
    kh, kw = w_shape[:2]
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    rows, cols = _live_taps(h, kh, sh, ph, dh), _live_taps(wd, kw, sw, pw, dw)
    if len(rows) * len(cols) > 1:
        # Materialise x once: XLA would otherwise fuse its producer (BatchNorm, ReLU) into
        # every view and compute it once per tap.
        x = lax.optimization_barrier(x)
    zeros = [(0, 0)] * len(lead)
    xp = jnp.pad(x, (*zeros, (ph, ph), (pw, pw), (0, 0))) if (ph or pw) else x
    origin = (0,) * len(lead)
    views = [
        lax.slice(
            xp,
            (*origin, i * dh, j * dw, 0),
            (*lead, i * dh + sh * (oh - 1) + 1, j * dw + sw * (ow - 1) + 1, c),
            (*(1,) * len(lead), sh, sw, 1),
        )
        for i in rows
        for j in cols
    ]
    return views, rows, cols, (lead[-1], oh, ow)


def _live_weight(w, rows, cols):
    """The kernel taps at ``rows`` x ``cols`` (not always contiguous: with a stride wider than
    the map, taps between two outputs' windows may read only padding)."""
    return w[np.asarray(rows)][:, np.asarray(cols)]


def _dense_weight(w, groups: int):
    """A grouped HWIO kernel as the equivalent dense one: zeros off the group blocks.

    Multiplying by those zeros adds exact zeros, so the result is the grouped convolution; the
    gradient of the dense weight restricted to the blocks (what autodiff returns through this
    reshape) is the grouped weight's gradient.
    """
    if groups == 1:
        return w
    kh, kw, cig, co = w.shape
    cog = co // groups
    blocks = w.reshape(kh, kw, cig, groups, cog)  # HWIO's out channels are group-major
    eye = jnp.eye(groups, dtype=w.dtype)
    return jnp.einsum('hwigo,gk->hwgiko', blocks, eye).reshape(kh, kw, cig * groups, co)


def conv_im2col(x, w, spec: ConvSpec):
    views, rows, cols, (n, oh, ow) = _shifted_views(x, w.shape, spec)
    w = _dense_weight(w, spec.groups)
    w = _live_weight(w, rows, cols)
    patches = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
    k = patches.shape[-1]
    y = patches.reshape(-1, k) @ w.reshape(k, -1)
    return y.reshape(n, oh, ow, -1)


def conv_taps(x, w, spec: ConvSpec):
    views, rows, cols, (n, oh, ow) = _shifted_views(x, w.shape, spec)
    w = _dense_weight(w, spec.groups)
    c = x.shape[-1]
    y = None
    for view, (i, j) in zip(views, [(i, j) for i in rows for j in cols]):
        t = view.reshape(-1, c) @ w[i, j]
        y = t if y is None else y + t
    return y.reshape(n, oh, ow, -1)


def conv_direct(x, w, spec: ConvSpec):
    """Shifted multiply-adds with no matmul: for a few channels (LeNet's 1->6), where a matmul's
    K or N is too narrow to block. One broadcast multiply and one reduction over (tap, C_in),
    which XLA fuses with the activation and pool after it."""
    views, rows, cols, (n, oh, ow) = _shifted_views(x, w.shape, spec)
    w = _dense_weight(w, spec.groups)
    w = _live_weight(w, rows, cols)
    patches = jnp.concatenate(views, axis=-1)  # (N, H', W', T·C_in)
    w = w.reshape(-1, w.shape[-1])  # (T·C_in, C_out)
    return jnp.sum(patches[..., None] * w, axis=-2)


def conv_grouped(x, w, spec: ConvSpec):
    """im2col per group as ONE batched matmul over the groups: Eigen loops over the groups with
    a small contraction each, and the dense weight of ``_dense_weight`` wastes G× the work.

    The input is moved group-major once, (G, N, H, W, C_in/G), so that the patch matrix is
    built directly in the batched matmul's (G, M, K) layout: built (M, T, G, K/T) instead,
    XLA copies the whole patch matrix into that layout in the forward and again in both
    gradients, which costs more than the matmuls."""
    n, h, wd, c = x.shape
    kh, kw, cig, co = w.shape
    g = spec.groups
    xg = jnp.moveaxis(x.reshape(n, h, wd, g, cig), 3, 0)
    views, rows, cols, (_, oh, ow) = _shifted_views(xg, w.shape, spec)
    patches = jnp.concatenate(views, axis=-1).reshape(g, n * oh * ow, -1)  # (G, M, T·cig)
    w = _live_weight(w.reshape(kh, kw, cig, g, co // g), rows, cols)
    w = jnp.moveaxis(w.reshape(-1, cig, g, co // g), 2, 0).reshape(g, -1, co // g)
    y = jnp.einsum('gmk,gko->gmo', patches, w)
    return jnp.moveaxis(y, 0, 1).reshape(n, oh, ow, co)


def _s2d_taps(k: int, s: int, b: int):
    """Space-to-depth kernel taps along one axis: for block kernel tap ``bi``, offset ``r``
    inside an input block of ``b·s`` pixels and output phase ``q``, the source tap of the
    original kernel, or ``k`` (a zero appended to it) where the block kernel holds a zero."""
    block = b * s
    kb = -(-((b - 1) * s + k) // block)
    t = (
        np.arange(kb)[:, None, None] * block
        + np.arange(block)[None, :, None]
        - np.arange(b)[None, None, :] * s
    )
    return np.where((t >= 0) & (t < k), t, k), kb


def s2d_block(spec: ConvSpec) -> int:
    """Output pixels per block edge: 2 for a stride-1 conv (its 5×5 on 3 channels becomes a 3×3
    on 12 channels into 24), 1 for a strided one (the stride already makes the blocks)."""
    return 2 if spec.stride == (1, 1) else 1


def conv_s2d(x, w, spec: ConvSpec):
    """Space-to-depth: the input cut into blocks of b·stride pixels stacked on channels, so a
    convolution with a few input channels (LeNet's 3 -> 6) becomes a stride-1 XLA convolution
    on many, whose channel loops Eigen can block. The block kernel holds exact zeros where a
    tap falls outside the original kernel, so the sum is the same up to rounding order."""
    w = _dense_weight(w, spec.groups)
    if spec.dilation != (1, 1):  # the dilated kernel written out, zeros between its taps
        (dh, dw), (kh, kw) = spec.dilation, w.shape[:2]
        full = jnp.zeros((dh * (kh - 1) + 1, dw * (kw - 1) + 1, *w.shape[2:]), w.dtype)
        w = full.at[::dh, ::dw].set(w)
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    (sh, sw), (ph, pw) = spec.stride, spec.padding
    b = s2d_block(spec)
    oh, ow = _out_size(h, kh, sh, ph, 1), _out_size(wd, kw, sw, pw, 1)
    rows, khb = _s2d_taps(kh, sh, b)
    cols, kwb = _s2d_taps(kw, sw, b)
    bh, bw = b * sh, b * sw
    obh, obw = -(-oh // b), -(-ow // b)
    lh, lw = (obh + khb - 1) * bh, (obw + kwb - 1) * bw
    xp = jnp.pad(x, ((0, 0), (ph, max(0, lh - h - ph)), (pw, max(0, lw - wd - pw)), (0, 0)))
    xp = xp[:, :lh, :lw].reshape(n, lh // bh, bh, lw // bw, bw, c)
    xb = xp.transpose(0, 1, 3, 2, 4, 5).reshape(n, lh // bh, lw // bw, bh * bw * c)
    wz = jnp.pad(w, ((0, 1), (0, 1), (0, 0), (0, 0)))
    wb = wz[rows[:, None, :, None, :, None], cols[None, :, None, :, None, :]]
    wb = wb.transpose(0, 1, 2, 3, 6, 4, 5, 7).reshape(khb, kwb, bh * bw * c, b * b * co)
    y = conv_xla(xb, wb, ConvSpec((1, 1), (0, 0), (1, 1), 1))
    y = y.reshape(n, obh, obw, b, b, co).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, obh * b, obw * b, co)[:, :oh, :ow]


def banded_block(out_width: int, cout: int) -> int:
    """Output columns per banded block: as few blocks as keep N = block·C_out near
    BANDED_COLUMNS, since each block's input window repeats the kernel's overlap."""
    blocks = max(1, out_width * cout // BANDED_COLUMNS)
    return -(-out_width // blocks)


def banded_window(block: int, kw: int, sw: int, dw: int) -> int:
    """Input columns one banded block reads: its ``block`` output columns' receptive field."""
    return (block - 1) * sw + (kw - 1) * dw + 1


def conv_banded(x, w, spec: ConvSpec):
    """The width axis as a banded (Toeplitz) matrix: out[.., b·B + j, o] = sum over kernel
    rows i and a window of input columns a of x[.., b·B·s + a, c] · T[i, a, c, j, o], where T
    holds w[i, k, c, o] at a = j·s + k·d and exact zeros elsewhere. So the conv is one matmul
    with K = kh·window·C_in and N = B·C_out, wide even for LeNet's 6 -> 16, at the cost of the
    zeros (window/kw of the work), run as BANDED_ROW_BLOCKS row blocks
    (``_row_blocked_matmul``); its transposes give dx and dW."""
    w = _dense_weight(w, spec.groups)
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    block = banded_block(ow, co)
    blocks = -(-ow // block)
    step = block * sw  # input columns between two blocks' windows
    window = banded_window(block, kw, sw, dw)
    reach = -(-window // step)  # how many blocks' worth of columns a window spans
    width = (blocks + reach - 1) * step
    x = lax.optimization_barrier(x)  # read by every kernel row: materialise its producer once
    xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, max(0, width - wd - pw)), (0, 0)))
    rows = []
    for i in range(kh):
        xr = lax.slice_in_dim(xp, i * dh, i * dh + sh * (oh - 1) + 1, sh, axis=1)
        parts = [
            xr[:, :, q * step : (q + blocks) * step].reshape(n, oh, blocks, step, c)
            for q in range(reach)
        ]
        rows.append((parts[0] if reach == 1 else jnp.concatenate(parts, axis=3))[:, :, :, :window])
    patches = jnp.stack(rows, axis=3).reshape(n * oh * blocks, kh * window * c)
    a, j, k = np.arange(window)[None, :, None], np.arange(block)[None, None, :], np.arange(kw)
    band = jnp.asarray(a == j * sw + k[:, None, None] * dw, w.dtype)  # (kw, window, block)
    t = jnp.einsum('ikco,kaj->iacjo', w, band).reshape(kh * window * c, block * co)
    y = _row_blocked_matmul(patches, t, BANDED_ROW_BLOCKS).reshape(n, oh, blocks * block, co)
    return y[:, :, :ow]


def _row_blocked_matmul(a, b, row_blocks: int):
    """``a @ b`` as one batched matmul over ``row_blocks`` blocks of a's rows, b shared.

    Its transpose for b is then a batch of shorter weight-gradient contractions summed, where
    ``a @ b`` gives one contraction over all of a's rows (N·H·W). XLA:CPU runs that one on
    Eigen (YNNPACK takes no transposed left operand), and Eigen's dot is faster on the shorter
    ones (figures: ``benchmarks/README.md``). All three passes use the same blocked form, so
    the forward and the weight gradient still share one patch matrix."""
    m, k = a.shape
    if row_blocks <= 1 or m % row_blocks:
        return a @ b
    shared = jnp.broadcast_to(b, (row_blocks, *b.shape))
    blocked = a.reshape(row_blocks, m // row_blocks, k)
    y = lax.dot_general(blocked, shared, (((2,), (1,)), ((0,), (0,))))
    return y.reshape(m, b.shape[1])


def conv_col2im(x, w, spec: ConvSpec):
    """Taps on the output side: one matmul of the unpadded input with every live tap's
    kernel side by side (K = C_in, N = taps·C_out), then each tap's slice of that product
    shifted into place and summed (col2im). Its weight gradient is then x^T times the shifted
    views of dy: the patch matrix is built from dy, so a conv with fewer channels out than in
    (DenseNet's growth convs, 160 -> 32) builds a C_out-wide one instead of a C_in-wide one."""
    w = _dense_weight(w, spec.groups)
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    rows, cols = _live_taps(h, kh, sh, ph, dh), _live_taps(wd, kw, sw, pw, dw)
    taps = [(i, j) for i in rows for j in cols]
    wl = jnp.moveaxis(_live_weight(w, rows, cols), 2, 0).reshape(c, len(taps) * co)
    z = (x.reshape(-1, c) @ wl).reshape(n, h, wd, len(taps) * co)
    # split, not slicing: its transpose is one concatenate of dy's shifted views
    parts = jnp.split(z, len(taps), axis=-1)
    y = None
    for part, (i, j) in zip(parts, taps):
        zp = jnp.pad(part, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        t = lax.slice(
            zp,
            (0, i * dh, j * dw, 0),
            (n, i * dh + sh * (oh - 1) + 1, j * dw + sw * (ow - 1) + 1, co),
            (1, sh, sw, 1),
        )
        y = t if y is None else y + t
    return y


_IMPLS = {
    'xla': conv_xla,
    'im2col': conv_im2col,
    'taps': conv_taps,
    'direct': conv_direct,
    'grouped': conv_grouped,
    's2d': conv_s2d,
    'banded': conv_banded,
    'col2im': conv_col2im,
}


# --------------------------------------------------------------------------------------------
# Running one pass, whole or in batch chunks
# --------------------------------------------------------------------------------------------
def _pass_on(name: str, pass_: str, spec: ConvSpec, x, w, dy):
    """One pass of lowering ``name``: 'fwd' -> y, 'dx' -> dL/dx, 'dw' -> dL/dw."""
    fn = _IMPLS[name]
    if pass_ == 'fwd':
        return fn(x, w, spec)
    if pass_ == 'dx':  # linear in x: the forward under vjp is dead code and XLA drops it
        return jax.vjp(lambda x: fn(x, w, spec), x)[1](dy)[0]
    return jax.vjp(lambda w: fn(x, w, spec), w)[1](dy)[0]


def run_pass(step: Pass, pass_: str, spec: ConvSpec, x, w, dy=None):
    """Run ``pass_`` with ``step``'s lowering, over the whole batch or chunk by chunk.

    Chunks are independent images, so y and dx are the chunks' results stacked and dW is their
    sum (``lax.scan``): the same arithmetic, with each chunk's patch matrix and views small
    enough to stay in cache.
    """
    n = x.shape[0]
    # XLA:CPU (jaxlib 0.10.2) miscompiles direct's dx inside lax.map (wrong values; the same
    # jaxpr run op by op is right), so that pass always runs on the whole batch.
    whole = step.lowering == 'direct' and pass_ == 'dx'
    if step.chunk is None or step.chunk >= n or whole:
        return _pass_on(step.lowering, pass_, spec, x, w, dy)
    k = n // step.chunk
    xs = x.reshape(k, step.chunk, *x.shape[1:])
    dys = None if dy is None else dy.reshape(k, step.chunk, *dy.shape[1:])
    if pass_ == 'dw':

        def add(acc, chunk):
            return acc + _pass_on(step.lowering, pass_, spec, chunk[0], w, chunk[1]), None

        return lax.scan(add, jnp.zeros_like(w), (xs, dys))[0]
    outs = lax.map(lambda c: _pass_on(step.lowering, pass_, spec, c[0], w, c[1]), (xs, dys))
    return outs.reshape(n, *outs.shape[2:])


# --------------------------------------------------------------------------------------------
# Choosing a plan
# --------------------------------------------------------------------------------------------
def plan(x_shape, w_shape, spec: ConvSpec, platform: str | None = None, dtype='float32') -> Plan:
    """The lowering of each pass for this shape, by the active mode (module docstring)."""
    platform = platform or jax.default_backend()
    fixed = _FIXED.get()
    if fixed is not None:
        pinned = fixed.get(shape_key(x_shape, w_shape, spec, dtype, platform))
        if pinned is not None:
            return pinned
    name = mode()
    if name in LOWERINGS:
        return Plan(*(Pass(name),) * 3)
    if platform != 'cpu':
        return Plan(*(Pass('xla'),) * 3)
    if name == 'autotune' and jnp.dtype(dtype) == jnp.float32:
        # float64 serves exact comparisons, not speed: it keeps the fixed rules.
        from jaxconv import conv_autotune

        return conv_autotune.tuned_plan(x_shape, w_shape, spec, dtype, platform)
    return cpu_plan(x_shape, w_shape, spec)


def _chunk(n: int, bytes_per_image: float, budget: float) -> int | None:
    """The largest divisor of ``n`` whose chunk fits ``budget`` bytes (None: the whole batch)."""
    if n * bytes_per_image <= budget:
        return None
    fits = [d for d in range(1, n) if n % d == 0 and d * bytes_per_image <= budget]
    return max(fits) if fits else 1


def chunked_im2col(x_shape, w_shape, spec: ConvSpec, itemsize: int = 4) -> Pass:
    """im2col on batch chunks whose patch matrix (live taps only) fits PATCH_BUDGET_BYTES:
    ``cpu_plan``'s "large" pass."""
    n, h, wd, cin = x_shape
    kh, kw = w_shape[:2]
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    taps = len(_live_taps(h, kh, sh, ph, dh)) * len(_live_taps(wd, kw, sw, pw, dw))
    return Pass('im2col', _chunk(n, oh * ow * taps * cin * itemsize, PATCH_BUDGET_BYTES))


def col2im_bytes(x_shape, w_shape, spec: ConvSpec, itemsize: int = 4) -> int:
    """The size of ``conv_col2im``'s tap products: N·H·W·(live taps)·C_out."""
    n, h, wd, _ = x_shape
    kh, kw, _, cout = w_shape
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    taps = len(_live_taps(h, kh, sh, ph, dh)) * len(_live_taps(wd, kw, sw, pw, dw))
    return n * h * wd * taps * cout * itemsize


def banded_bytes(x_shape, w_shape, spec: ConvSpec, itemsize: int = 4) -> int:
    """The size of ``conv_banded``'s patch matrix: N·OH·blocks rows of kh·window·C_in."""
    n, h, wd, cin = x_shape
    kh, kw, _, cout = w_shape
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    block = banded_block(ow, cout)
    window = banded_window(block, kw, sw, dw)
    return n * oh * -(-ow // block) * kh * window * cin * itemsize


def banded(x_shape, w_shape, spec: ConvSpec, itemsize: int = 4) -> Pass | None:
    """The banded pass for a conv with fewer than FEW_CHANNELS in: stride 1 with fewer than
    BANDED_MAX_COUT out (LeNet's two convs), or strided (the 7×7/2 and 11×11/4 stems on 3
    channels), where with C_out >= BANDED_MAX_COUT a block is one output column: an im2col
    whose patches are kh row slices, not kh·kw tap slices. On the whole batch when its patch
    matrix fits BANDED_MAX_BYTES (the forward and dW then share it), else on batch chunks that
    fit, since XLA's weight gradient with 3 channels in is far slower there (benchmarks/README.md).
    None where the conv is not such a conv."""
    *_, cin, cout = w_shape
    wide_stride_1 = spec.stride == (1, 1) and cout >= BANDED_MAX_COUT
    if spec.groups != 1 or cin >= FEW_CHANNELS or wide_stride_1:
        return None
    n = x_shape[0]
    chunk = _chunk(n, banded_bytes(x_shape, w_shape, spec, itemsize) / n, BANDED_MAX_BYTES)
    return Pass('banded', chunk)


def narrowing(x_shape, w_shape, spec: ConvSpec, itemsize: int = 4) -> bool:
    """A stride-1 conv with at most COL2IM_MAX_COUT_PERCENT % of its input channels out, whose
    col2im tap products fit COL2IM_MAX_BYTES: col2im then builds its patches from the narrow
    dy, not the wide x."""
    kh, kw, cin, cout = w_shape
    return (
        spec.stride == (1, 1)
        and spec.dilation == (1, 1)
        and spec.groups == 1
        and kh * kw > 1
        and 100 * cout <= COL2IM_MAX_COUT_PERCENT * cin
        and col2im_bytes(x_shape, w_shape, spec, itemsize) <= COL2IM_MAX_BYTES
    )


def cpu_plan(x_shape, w_shape, spec: ConvSpec, itemsize: int = 4) -> Plan:
    """The CPU rules; the measurements behind them are in ``benchmarks/README.md``.

    | case (first match)                     | forward | dx                     | dW          |
    |----------------------------------------|---------|------------------------|-------------|
    | 1×1, no padding, not grouped           | matmul  | matmul                 | matmul      |
    | grouped                                | grouped | grouped                | grouped     |
    | an input or output map of 2×2 or less  | im2col  | im2col                 | small/large |
    | a kernel wider than the input map      | small   | small                  | XLA         |
    | C_in < FEW_CHANNELS; stride 1 with     | banded  | banded                 | banded      |
    | C_out < BANDED_MAX_COUT, or strided    |         |                        |             |
    | (banded; on batch chunks of patches    |         |                        |             |
    | <= BANDED_MAX_BYTES where larger)      |         |                        |             |
    | stride 1, C_out <= C_in/2 (narrowing)  | col2im  | col2im                 | col2im      |
    | output map of 4×4 or less              | XLA     | small                  | XLA         |
    | one tap's view < SMALL_VIEW_BYTES      | XLA     | XLA [2]                | XLA         |
    | otherwise (large maps)                 | XLA     | XLA                    | large [1]   |

    [1] XLA when C_out < IM2COL_DW_MIN_COUT.
    [2] small for a stride-1 widening conv: FEW_CHANNELS <= C_in < min(C_out,
        XLA_DX_MIN_CHANNELS).

    "banded" gives the forward and dW one patch matrix, which XLA builds once for both
    inside the train step. "small" is per-tap matmuls when
    C_in >= TAPS_MIN_CHANNELS (K = C_in is then wide enough for a matmul), else one im2col
    matmul; "large" is im2col run on batch chunks whose
    patch matrix fits PATCH_BUDGET_BYTES; "small/large" picks by the view size.
    """
    n, h, wd, cin = x_shape
    kh, kw = w_shape[:2]
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    oh, ow = _out_size(h, kh, sh, ph, dh), _out_size(wd, kw, sw, pw, dw)
    if (kh, kw) == (1, 1) and (ph, pw) == (0, 0) and spec.groups == 1:
        return Plan(*(Pass('im2col'),) * 3)  # a matmul on the (strided) input as it is
    view_bytes = n * oh * ow * cin * itemsize
    small = Pass('taps') if cin >= TAPS_MIN_CHANNELS else Pass('im2col')
    large = chunked_im2col(x_shape, w_shape, spec, itemsize)
    small_or_large = small if view_bytes < SMALL_VIEW_BYTES else large
    xla = Pass('xla')
    if spec.groups > 1:  # Eigen loops over the groups; one batched matmul over them does not
        return Plan(*(Pass('grouped'),) * 3)
    if min(oh, ow, h, wd) <= 2:  # XLA's conv is 100x off its fast path here; with 4 or fewer
        im2col = Pass('im2col')  # positions per image, one matmul over all live taps beats a
        return Plan(im2col, im2col, small_or_large)  # matmul per tap, even at wide C_in
    if dh * (kh - 1) + 1 > h or dw * (kw - 1) + 1 > wd:  # every window reaches into padding:
        return Plan(small, small, xla)  # XLA's forward and dx leave the fast path, not its dW
    band = banded(x_shape, w_shape, spec, itemsize)  # LeNet's convs and the 3-channel stems:
    if band is not None:  # XLA's conv runs up to 5x below the banded matmul there
        return Plan(band, band, band)
    if narrowing(x_shape, w_shape, spec, itemsize):  # DenseNet's growth convs (160 -> 32)
        col2im = Pass('col2im')
        return Plan(col2im, col2im, col2im)
    if min(oh, ow) <= 4:  # XLA's dW (a reduction over N·H·W) keeps its fast path; its dx not
        return Plan(xla, small, xla)
    if view_bytes >= SMALL_VIEW_BYTES:  # large views: dW on XLA where C_out is narrow
        return Plan(xla, xla, large if w_shape[-1] >= IM2COL_DW_MIN_COUT else xla)
    # XLA's dx writes C_in channels; when they are fewer than C_out and narrow, it runs far
    # below its matmul rate (benchmarks/README.md).
    widening = spec.stride == (1, 1) and FEW_CHANNELS <= cin < min(w_shape[-1], XLA_DX_MIN_CHANNELS)
    return Plan(xla, small if widening else xla, xla)


# --------------------------------------------------------------------------------------------
# The convolution
# --------------------------------------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _mixed_conv(x, w, spec: ConvSpec, p: Plan):
    return run_pass(p.fwd, 'fwd', spec, x, w)


def _mixed_fwd(x, w, spec, p):
    return run_pass(p.fwd, 'fwd', spec, x, w), (x, w)


def _mixed_bwd(spec, p, residuals, dy):
    x, w = residuals
    return run_pass(p.dx, 'dx', spec, x, w, dy), run_pass(p.dw, 'dw', spec, x, w, dy)


_mixed_conv.defvjp(_mixed_fwd, _mixed_bwd)


def conv2d(x, w, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1):
    """torch-semantics 2-D convolution, NHWC × HWIO -> NHWC, lowered per ``plan``.

    x: (N, H, W, C_in); w: (kh, kw, C_in / groups, C_out); symmetric ``padding``.
    """
    spec = ConvSpec(tuple(stride), tuple(padding), tuple(dilation), int(groups))
    platform = jax.default_backend()
    dtype = jnp.result_type(x, w).name
    p = plan(x.shape, w.shape, spec, platform, dtype)
    calls = _RECORD.get()
    if calls is not None:
        calls.append(ConvCall(tuple(x.shape), tuple(w.shape), spec, p, dtype, platform))
    if p.fwd == p.dx == p.dw and p.fwd.chunk is None:
        return _IMPLS[p.fwd.lowering](x, w, spec)  # plain autodiff (forward-mode AD works too)
    return _mixed_conv(x, w, spec, p)
