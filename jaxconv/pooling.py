"""Max and sum pooling as strided slices, with torch's max-pool gradient.

Why not ``lax.reduce_window``: XLA:CPU expands the max-pool gradient (``select_and_scatter``)
into a variadic reduce_window with iotas plus a scatter, and the average-pool gradient into an
interior pad plus a reduce_window. Written as the kh·kw strided views of the padded input, a
pool is one elementwise fusion forward, and its gradient a sum of pads of masked cotangents.

The max-pool gradient follows torch: each output's gradient goes to ONE input, the first
maximal element of its window in torch's scan order (rows, then columns), where JAX's own
``max`` rule would split it among tied elements.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]


def _views(xp, window, strides):
    """The window's strided views of the padded input ``xp``, in torch's scan order."""
    n, hp, wp, c = xp.shape
    (kh, kw), (sh, sw) = window, strides
    oh, ow = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    return [lax.slice(xp, (0, i, j, 0), (n, i + sh * (oh - 1) + 1, j + sw * (ow - 1) + 1, c),
                      (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]


def _pad(x, pads: Pads, value):
    if all(p == (0, 0) for p in pads):
        return x
    return lax.pad(x, jnp.array(value, x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads),
                                                  (0, 0, 0)])


def sum_pool(x, window, strides, pads: Pads):
    """The sum over each window of the zero-padded input (x: (N, H, W, C))."""
    views = _views(_pad(x, pads, 0), window, strides)
    return functools.reduce(lax.add, views)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x, window, strides, pads: Pads):
    """The max over each window of the -inf-padded input (x: (N, H, W, C))."""
    return functools.reduce(lax.max, _views(_pad(x, pads, -jnp.inf), window, strides))


def _max_pool_fwd(x, window, strides, pads):
    y = max_pool(x, window, strides, pads)
    return y, (x, y)


def _max_pool_bwd(window, strides, pads, residuals, dy):
    x, y = residuals
    xp = _pad(x, pads, -jnp.inf)
    views, unview = jax.vjp(lambda xp: _views(xp, window, strides), xp)
    taken = jnp.zeros(y.shape, bool)
    cotangents = []
    for v in views:  # torch's scan order: the first maximum takes the gradient
        first = (v == y) & ~taken
        taken = taken | first
        cotangents.append(jnp.where(first, dy, jnp.zeros((), dy.dtype)))
    (dxp,) = unview(cotangents)
    (lo_h, _), (lo_w, _) = pads
    return (lax.slice(dxp, (0, lo_h, lo_w, 0),
                      (x.shape[0], lo_h + x.shape[1], lo_w + x.shape[2], x.shape[3])),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
