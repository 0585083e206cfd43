"""From-scratch convolution and pooling operations (d2l ch. 7, in JAX).

These are the didactic building blocks of the course, written with
``jax.numpy`` only so that every step is visible.  They are vectorised: the
only Python loops run over the (small, static) kernel or pooling-window
offsets, never over output pixels, so each function traces into a handful of
array operations and is usable under ``jax.jit``.

Shapes follow the course: single images are ``(h, w)``, multi-channel images
are ``(c, h, w)`` (channels first, no batch axis), kernels are ``(kh, kw)``,
``(c_i, kh, kw)`` or ``(c_o, c_i, kh, kw)``.  "Convolution" here is the
cross-correlation that deep-learning libraries actually compute, in *valid*
mode (no padding, stride 1).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    'softmax',
    'corr2d',
    'corr2d_multi_in',
    'corr2d_multi_in_out',
    'corr2d_multi_in_out_1x1',
    'pool2d',
    'Conv2D',
    'learn_kernel',
]


def softmax(x, axis=-1):
    """Numerically stable softmax along ``axis``.

    ``x`` may have any shape; the result has the same shape and sums to 1
    along ``axis``.  The maximum is subtracted first so that ``exp`` never
    overflows (``softmax([1000, 1001])`` is finite); this does not change the
    result because softmax is invariant to adding a constant.
    """
    x = jnp.asarray(x)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def corr2d(X, K):
    """2-D cross-correlation of ``X`` (h, w) with kernel ``K`` (kh, kw).

    Returns an array of shape (h - kh + 1, w - kw + 1) ("valid" mode), where
    ``Y[i, j] = sum(X[i:i+kh, j:j+kw] * K)``.  This is the core operation of a
    convolutional layer.  Instead of looping over output pixels we loop over
    the kh*kw kernel offsets (static) and add up shifted, scaled copies of X.
    """
    X = jnp.asarray(X)
    K = jnp.asarray(K)
    h, w = K.shape
    out_h, out_w = X.shape[0] - h + 1, X.shape[1] - w + 1
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f'kernel {K.shape} is larger than input {X.shape}')
    Y = None
    for i in range(h):
        for j in range(w):
            term = K[i, j] * X[i : i + out_h, j : j + out_w]
            Y = term if Y is None else Y + term
    return Y


def corr2d_multi_in(X, K):
    """Multi-input-channel cross-correlation.

    ``X`` (c_i, h, w) and ``K`` (c_i, kh, kw) -> (h', w'): correlate each
    channel with its own kernel slice and sum over channels, which is what a
    conv layer with one output channel does.
    """
    X = jnp.asarray(X)
    K = jnp.asarray(K)
    if X.shape[0] != K.shape[0]:
        raise ValueError(f'channel mismatch: X {X.shape}, K {K.shape}')
    return jnp.sum(jax.vmap(corr2d)(X, K), axis=0)


def corr2d_multi_in_out(X, K):
    """Multi-input, multi-output-channel cross-correlation.

    ``X`` (c_i, h, w) and ``K`` (c_o, c_i, kh, kw) -> (c_o, h', w'): one
    :func:`corr2d_multi_in` per output channel, stacked along axis 0.  This is
    a full (unbatched, unpadded, stride-1) conv layer without bias.
    """
    X = jnp.asarray(X)
    K = jnp.asarray(K)
    return jax.vmap(corr2d_multi_in, in_axes=(None, 0))(X, K)


def corr2d_multi_in_out_1x1(X, K):
    """1x1 convolution computed as a matrix multiplication (as d2l does).

    ``X`` (c_i, h, w) and ``K`` (c_o, c_i, 1, 1) -> (c_o, h, w).  A 1x1 conv
    mixes channels independently at every pixel, i.e. it is a fully connected
    layer applied per pixel: reshape X to (c_i, h*w), K to (c_o, c_i), take
    ``K @ X`` and reshape back.  It equals :func:`corr2d_multi_in_out`.
    """
    X = jnp.asarray(X)
    K = jnp.asarray(K)
    c_i, h, w = X.shape
    c_o = K.shape[0]
    X = X.reshape((c_i, h * w))
    K = K.reshape((c_o, c_i))
    Y = jnp.matmul(K, X)
    return Y.reshape((c_o, h, w))


def pool2d(X, pool_size, mode='max'):
    """2-D max or average pooling of ``X`` (h, w), stride 1, no padding.

    ``pool_size`` is (p_h, p_w); returns (h - p_h + 1, w - p_w + 1).  Pooling
    makes the representation less sensitive to small shifts.  ``mode`` is
    ``'max'`` or ``'avg'`` (anything else raises ``ValueError``).  The p_h*p_w
    shifted views of X are stacked and reduced along the new axis.  Under
    ``jax.jit`` pass ``pool_size`` and ``mode`` as static arguments.
    """
    if mode not in ('max', 'avg'):
        raise ValueError(f"unknown pooling mode {mode!r}; expected 'max' or 'avg'")
    X = jnp.asarray(X)
    p_h, p_w = pool_size
    out_h, out_w = X.shape[0] - p_h + 1, X.shape[1] - p_w + 1
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f'pool size {tuple(pool_size)} is larger than input {X.shape}')
    windows = jnp.stack(
        [X[i : i + out_h, j : j + out_w] for i in range(p_h) for j in range(p_w)], axis=0
    )
    if mode == 'max':
        return jnp.max(windows, axis=0)
    return jnp.mean(windows, axis=0)


class Conv2D(nnx.Module):
    """From-scratch 2-D conv layer: ``corr2d(x, weight) + bias``.

    ``weight`` has shape ``kernel_size`` and is drawn uniformly from [0, 1)
    (like ``torch.rand``) using ``rngs.params()``; ``bias`` is ``zeros(1)``.
    Input ``x`` is a single-channel (h, w) image; output is (h', w').  It
    shows that a conv layer is just a learnable kernel plus a scalar bias.
    """

    def __init__(self, kernel_size, *, rngs: nnx.Rngs):
        kernel_size = tuple(kernel_size)
        self.weight = nnx.Param(jax.random.uniform(rngs.params(), kernel_size))
        self.bias = nnx.Param(jnp.zeros(1))

    def __call__(self, x):
        return corr2d(x, self.weight[...]) + self.bias[...]


def _sq_error(K, X, Y):
    return jnp.sum((corr2d(X, K) - Y) ** 2)


@partial(jax.jit, static_argnames=('steps',))
def _descend(K, X, Y, lr, steps):
    """``steps`` of plain gradient descent; returns (K, loss before each step)."""

    def step(K, _):
        loss, grad = jax.value_and_grad(_sq_error)(K, X, Y)
        return K - lr * grad, loss

    return jax.lax.scan(step, K, None, length=steps)


def learn_kernel(X, Y, kernel_shape=(1, 2), lr=3e-2, steps=10, key=None, *, init=None):
    """Learn a conv kernel from (input, output) pairs by gradient descent.

    The course's "learning a kernel" experiment: ``X`` (h, w) and
    ``Y = corr2d(X, K_true)``; start from a random ``kernel_shape`` kernel
    (no bias) and do ``steps`` updates ``K -= lr * grad`` of the summed squared
    error ``((corr2d(X, K) - Y) ** 2).sum()``.  The kernel is initialised like
    torch's ``LazyConv2d`` (kaiming-uniform with a=sqrt(5), i.e. uniform in
    +-1/sqrt(fan_in), fan_in = kh*kw for one input channel) from ``key``
    (default ``jax.random.key(0)``).  Passing ``init`` (a ``kernel_shape``
    array) instead starts from that kernel, e.g. to replay a known run.

    Returns ``(K, losses)``: the learned (kh, kw) kernel and a list of
    ``steps`` Python floats, the loss computed before each update (what the
    torch loop prints as ``l.sum()``).  The loop itself is a jitted
    ``lax.scan``.
    """
    X = jnp.asarray(X, dtype=jnp.float32)
    Y = jnp.asarray(Y, dtype=jnp.float32)
    kernel_shape = tuple(kernel_shape)
    if init is not None:
        K0 = jnp.asarray(init, dtype=jnp.float32)
        if K0.shape != kernel_shape:
            raise ValueError(f'init has shape {K0.shape}, expected {kernel_shape}')
    else:
        if key is None:
            key = jax.random.key(0)
        bound = 1.0 / math.sqrt(math.prod(kernel_shape))
        K0 = jax.random.uniform(key, kernel_shape, minval=-bound, maxval=bound)
    K, losses = _descend(K0, X, Y, jnp.float32(lr), int(steps))
    return K, [float(loss) for loss in losses]
