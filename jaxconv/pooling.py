"""Max and sum pooling without ``reduce_window``, in torch's summation order.

Why not ``lax.reduce_window``: XLA:CPU expands the max-pool gradient (``select_and_scatter``)
into a variadic reduce_window with iotas plus a scatter, and the average-pool gradient into an
interior pad plus a reduce_window. Written as the kh·kw strided views of the padded input (or,
for non-overlapping windows, one reshape), a pool is one elementwise fusion forward and its
gradient a sum of padded cotangents.

Both gradients are written out under ``custom_vjp`` so that they are torch's, bit for bit:

- each max-pool output's gradient goes to ONE input, the first maximal element of its window
  in torch's scan order (rows, then columns), where JAX's own ``max`` rule would split it
  among tied elements;
- an input that lies in several windows receives their gradients summed in the order torch's
  CPU kernels add them: output positions in raster order. For the view of tap (i, j), the
  input at row r comes from output row (r - i) / stride, so a later tap means an earlier
  output: the taps are accumulated last to first. The forward sums taps first to last, as
  torch's average pool does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Pair = tuple[int, int]
Pads = tuple[Pair, Pair]


def _pad(x, pads: Pads, value):
    if all(p == (0, 0) for p in pads):
        return x
    config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)]
    return lax.pad(x, jnp.array(value, x.dtype), config)


def _unpad(dxp, pads: Pads, shape):
    (lo_h, _), (lo_w, _) = pads
    n, h, w, c = shape
    return lax.slice(dxp, (0, lo_h, lo_w, 0), (n, lo_h + h, lo_w + w, c))


def _out_size(padded: Pair, window: Pair, strides: Pair) -> Pair:
    return tuple((p - k) // s + 1 for p, k, s in zip(padded, window, strides))


def _taps(window: Pair):
    return [(i, j) for i in range(window[0]) for j in range(window[1])]


def _tiles(window: Pair, strides: Pair) -> bool:
    """Non-overlapping windows: each input lies in at most one window (one reshape)."""
    return tuple(window) == tuple(strides)


def _view(xp, tap, window, strides):
    """Tap ``(i, j)``'s strided view of the padded input ``xp``: one element per window."""
    n, hp, wp, c = xp.shape
    oh, ow = _out_size((hp, wp), window, strides)
    (i, j), (sh, sw) = tap, strides
    return lax.slice(
        xp, (0, i, j, 0), (n, i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1, c), (1, sh, sw, 1)
    )


def _windows(xp, window, strides):
    """Non-overlapping windows as axes: (N, OH, kh, OW, kw, C), rows past the last dropped."""
    n, hp, wp, c = xp.shape
    (kh, kw), (oh, ow) = window, _out_size((hp, wp), window, strides)
    xp = xp[:, : oh * kh, : ow * kw]
    return xp.reshape(n, oh, kh, ow, kw, c)


def _unview_sum(cotangents, padded_shape, window, strides):
    """The transpose of the taps' views: each cotangent padded back into place, summed last
    tap to first (torch's output raster order for an input shared by several windows)."""
    n, hp, wp, c = padded_shape
    (sh, sw) = strides
    total = None
    for (i, j), ct in reversed(list(zip(_taps(window), cotangents))):
        oh, ow = ct.shape[1:3]
        config = [
            (0, 0, 0),
            (i, hp - i - sh * (oh - 1) - 1, sh - 1),
            (j, wp - j - sw * (ow - 1) - 1, sw - 1),
            (0, 0, 0),
        ]
        placed = lax.pad(ct, jnp.zeros((), ct.dtype), config)
        total = placed if total is None else total + placed
    return total


def _untile(windows, padded_shape):
    """The transpose of ``_windows``: back to (N, Hp, Wp, C), zeros in any dropped rows."""
    n, oh, kh, ow, kw, c = windows.shape
    dx = windows.reshape(n, oh * kh, ow * kw, c)
    hp, wp = padded_shape[1:3]
    return lax.pad(
        dx,
        jnp.zeros((), dx.dtype),
        [(0, 0, 0), (0, hp - oh * kh, 0), (0, wp - ow * kw, 0), (0, 0, 0)],
    )


# -- sum pool ------------------------------------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def sum_pool(x, window: Pair, strides: Pair, pads: Pads):
    """The sum over each window of the zero-padded input (x: (N, H, W, C)), taps in order."""
    xp = _pad(x, pads, 0)
    if _tiles(window, strides):
        w = _windows(xp, window, strides)
        return functools.reduce(lax.add, [w[:, :, i, :, j] for i, j in _taps(window)])
    return functools.reduce(lax.add, [_view(xp, t, window, strides) for t in _taps(window)])


def _sum_pool_fwd(x, window, strides, pads):
    return sum_pool(x, window, strides, pads), x.shape


def _sum_pool_bwd(window, strides, pads, shape, dy):
    n, h, w, c = shape
    padded = (n, h + sum(pads[0]), w + sum(pads[1]), c)
    if _tiles(window, strides):
        kh, kw = window
        if kh * kw > 1:  # each element of dy goes to kh·kw inputs
            dy = _computed_once(dy)
        tiled = jnp.broadcast_to(dy[:, :, None, :, None], (n, dy.shape[1], kh, dy.shape[2], kw, c))
        return (_unpad(_untile(tiled, padded), pads, shape),)
    cotangents = [dy] * (window[0] * window[1])
    return (_unpad(_unview_sum(cotangents, padded, window, strides), pads, shape),)


sum_pool.defvjp(_sum_pool_fwd, _sum_pool_bwd)


# -- max pool ------------------------------------------------------------------------------
def _tap_views(xp, window, strides):
    if _tiles(window, strides):
        w = _windows(xp, window, strides)
        return [w[:, :, i, :, j] for i, j in _taps(window)]
    return [_view(xp, t, window, strides) for t in _taps(window)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x, window: Pair, strides: Pair, pads: Pads):
    """The max over each window of the -inf-padded input (x: (N, H, W, C))."""
    return functools.reduce(lax.max, _tap_views(_pad(x, pads, -jnp.inf), window, strides))


def _max_pool_fwd(x, window, strides, pads):
    y = max_pool(x, window, strides, pads)
    return y, (x, y)


def _computed_once(dy):
    """``dy`` divided by a 1 that XLA cannot fold (``dy == dy``, floored at 1 where dy is NaN):
    the value is unchanged, bit for bit, NaN and inf included (a subnormal is flushed to zero,
    as by every arithmetic op of XLA:CPU).

    Why: XLA:CPU fuses a cheap producer into every consumer that reads it, and a pool's
    gradient reads each element of ``dy`` once per tap (an overlapping pool) or per input of
    its window (a tiled one), so the elementwise chain that computes ``dy`` (in DenseNet, a
    dense block's concat-slice and BatchNorm gradients; in LeNet, the banded conv's dx, a sum
    of shifted pads) is recomputed that many times. A float divide is "expensive" to its fusion
    rules, which never duplicate an expensive producer into a consumer that reuses its
    elements: ``dy`` is computed once. ``optimization_barrier`` and identity control flow do
    not survive to fusion.
    """
    one = jnp.maximum((dy == dy).astype(dy.dtype), jnp.ones((), dy.dtype))
    return dy / one


def _max_pool_bwd(window, strides, pads, residuals, dy):
    x, y = residuals
    xp = _pad(x, pads, -jnp.inf)
    taken = jnp.zeros(y.shape, bool)
    firsts = []
    for v in _tap_views(xp, window, strides):  # torch's scan order: the first maximum wins
        first = (v == y) & ~taken
        taken = taken | first
        firsts.append(first)
    tiles = _tiles(window, strides)
    if len(firsts) > 1 and not tiles:  # strided views: each tap re-reads dy
        dy = _computed_once(dy)
    zero = jnp.zeros((), dy.dtype)
    cotangents = [jnp.where(first, dy, zero) for first in firsts]
    if tiles:
        kh, kw = window
        rows = [jnp.stack(cotangents[i * kw : (i + 1) * kw], axis=3) for i in range(kh)]
        dxp = _untile(jnp.stack(rows, axis=2), xp.shape)
    else:
        dxp = _unview_sum(cotangents, xp.shape, window, strides)
    return (_unpad(dxp, pads, x.shape),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
