"""Torch-exact building blocks for Flax NNX, in NHWC.

Every layer here reproduces the arithmetic of the ``torch.nn`` layer of the same name, so that
a model written with them matches its PyTorch twin number for number once the weights are
copied (``parity.to_flax``). The classes carry torch's names (``Conv2d``, ``BatchNorm2d``,
``MaxPool2d`` ...) and the parameter-free ones (``ReLU``, ``Flatten``) are modules too, so a
``Sequential`` here has the same indices as the torch ``nn.Sequential`` it mirrors and the
weight map between the two stays one-to-one.

Layout conventions (the only places where torch and Flax differ on purpose):
  * activations are NHWC (XLA's fast layout on CPU/GPU/TPU);
  * a conv kernel is HWIO ``(kh, kw, in/groups, out)``, a Linear kernel is ``(in, out)``;
  * ``Flatten`` flattens in torch's C·H·W order, so a following ``Linear`` takes torch's
    weight with a plain transpose.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.conv_lowering import conv2d
from jaxconv.pooling import max_pool, sum_pool

Pair = int | tuple[int, int]


def _pair(v: Pair) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f'expected an int or a pair of ints, got {v}')
    return v


# --------------------------------------------------------------------------------------------
# Taps: a way to observe every layer's output (and dropout masks) without changing the model.
# The parity report and the layer summary install a tap; normal use pays one context-var read.
# --------------------------------------------------------------------------------------------
_TAP: contextvars.ContextVar[Callable[[nnx.Module, Any], Any] | None] = contextvars.ContextVar(
    'jaxconv_tap', default=None
)


@contextlib.contextmanager
def tap(fn: Callable[[nnx.Module, Any], Any]):
    """Call ``fn(layer, output)`` after every ``Layer`` runs inside this block.

    ``fn`` may return a replacement output (or None to keep it). Used eagerly (outside jit) by
    the per-layer parity report and the layer summary.
    """
    token = _TAP.set(fn)
    try:
        yield
    finally:
        _TAP.reset(token)


class Layer(nnx.Module):
    """Base of the torch-named layers: routes the output through the active tap, if any."""

    def __call__(self, x, *args, **kwargs):
        y = self.forward(x, *args, **kwargs)
        fn = _TAP.get()
        if fn is not None:
            replaced = fn(self, y)
            if replaced is not None:
                y = replaced
        return y

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError


def _uniform(key, shape, bound: float, dtype):
    """U(-bound, bound) drawn with numpy from a seed taken from ``key``.

    ``jax.random.uniform`` compiles one XLA program per distinct shape when run eagerly, which
    made building a model with many layer shapes (GoogLeNet) take tens of seconds; numpy draws
    the same distribution at once.
    Deterministic: the same ``nnx.Rngs`` seed gives the same weights.
    """
    seed = np.asarray(jax.random.key_data(key)).astype(np.uint32).ravel().tolist()
    values = np.random.default_rng(seed).uniform(-bound, bound, shape)
    return jnp.asarray(values, dtype=dtype)


def _torch_uniform_bias(fan_in: int):
    """torch's default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return _uniform(key, shape, bound, dtype)

    return init


def xavier_uniform(key, shape, dtype=jnp.float32):
    """The course's ``init_cnn`` (``nn.init.xavier_uniform_``) for conv and linear weights.

    For an HWIO kernel fan_in = in/groups·kh·kw and fan_out = out·kh·kw, as torch computes them
    on its (out, in/groups, kh, kw) weight; a Linear kernel is (in, out).
    """
    receptive = math.prod(shape[:-2])
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    return _uniform(key, shape, math.sqrt(6.0 / (fan_in + fan_out)), dtype)


# --------------------------------------------------------------------------------------------
# Parametric layers
# --------------------------------------------------------------------------------------------
class Conv2d(Layer):
    """``torch.nn.Conv2d`` in NHWC: explicit symmetric padding, stride, dilation, groups.

    Padding is always the explicit ``((p, p), (p, p))`` torch uses; ``'SAME'`` would pad
    (0, 1) on a stride-2 layer with even input and silently shift every feature map.
    x: (N, H, W, in_channels) -> (N, H', W', out_channels).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Pair,
        stride: Pair = 1,
        padding: Pair = 0,
        dilation: Pair = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        kernel_init=xavier_uniform,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f'in_channels={in_channels} and out_channels={out_channels} must '
                f'both be divisible by groups={groups}'
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.dtype = dtype
        kh, kw = self.kernel_size
        shape = (kh, kw, in_channels // groups, out_channels)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, dtype))
        fan_in = in_channels // groups * kh * kw
        self.bias = (
            nnx.Param(_torch_uniform_bias(fan_in)(rngs.params(), (out_channels,), dtype))
            if bias
            else None
        )

    def forward(self, x):
        # Lowered per shape and per pass (forward / dx / dW): XLA:CPU's own convolution is
        # 100x slower on 2x2 maps, see ``jaxconv.conv_lowering``.
        y = conv2d(
            x.astype(self.dtype),
            self.kernel[...],
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )
        if self.bias is not None:
            y = y + self.bias[...]
        return y


class Linear(Layer):
    """``torch.nn.Linear``; the kernel is stored (in, out), i.e. torch's weight transposed."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        kernel_init=xavier_uniform,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), dtype))
        self.bias = (
            nnx.Param(_torch_uniform_bias(in_features)(rngs.params(), (out_features,), dtype))
            if bias
            else None
        )

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f'Linear expects {self.in_features} input features, got '
                f'{x.shape[-1]} (input shape {tuple(x.shape)})'
            )
        y = x.astype(self.dtype) @ self.kernel[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return y


class BatchNorm2d(Layer):
    """``torch.nn.BatchNorm2d`` over the channel (last) axis, with torch's statistics.

    Training mode normalises with the biased batch variance but STORES the unbiased one
    (n / (n - 1)), and updates running = (1 - momentum) · running + momentum · batch with torch's
    momentum convention (0.1). ``num_batches_tracked`` is kept as torch keeps it, so a state_dict
    round-trips exactly. Switched by ``model.train()`` / ``model.eval()`` (use_running_average).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        dtype=jnp.float32,
        use_running_average: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        self.num_features, self.eps, self.momentum, self.dtype = num_features, eps, momentum, dtype
        self.use_running_average = use_running_average
        self.scale = nnx.Param(jnp.ones((num_features,), dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype))
        self.mean = nnx.BatchStat(jnp.zeros((num_features,), dtype))
        self.var = nnx.BatchStat(jnp.ones((num_features,), dtype))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def forward(self, x):
        x = x.astype(self.dtype)
        if x.shape[-1] != self.num_features:
            raise ValueError(f'BatchNorm2d expects {self.num_features} channels, got {x.shape[-1]}')
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[a] for a in axes)
            if n < 2:
                raise ValueError(
                    'BatchNorm2d in training mode needs more than 1 value per channel '
                    f'(got input shape {tuple(x.shape)}), as torch does'
                )
            mean = x.mean(axes)
            var = jnp.square(x - mean).mean(axes)  # two-pass, as torch: no E[x²]-E[x]² cancellation
            m = self.momentum
            self.mean[...] = (1 - m) * self.mean[...] + m * mean
            self.var[...] = (1 - m) * self.var[...] + m * var * (n / (n - 1))
            self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
        inv = jax.lax.rsqrt(var + self.eps) * self.scale[...]
        return (x - mean) * inv + self.bias[...]


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------
def _pool_geometry(size: int, k: int, s: int, p: int, ceil_mode: bool) -> tuple[int, int]:
    """Return (out, extra_high_pad) with torch's output-size rule.

    out = floor_or_ceil((size + 2p - k) / s) + 1, and with ceil_mode the last window must start
    inside the input or its left padding (torch drops it otherwise).
    """
    if p > k // 2:
        raise ValueError(
            f'pad should be at most half of effective kernel size, got pad={p}, '
            f'kernel_size={k} (torch raises the same)'
        )
    span = size + 2 * p - k
    # torch: div_rtn(span + (s-1 if ceil_mode else 0), s) + 1 (floor division), so a ceil_mode
    # window may overhang a too-small input by up to s - 1 cells.
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    if out < 1:
        raise ValueError(f'pooling window {k} (padding {p}) is larger than the input size {size}')
    extra = max(0, (out - 1) * s + k - (size + 2 * p))
    return out, extra


class _Pool2d(Layer):
    def __init__(
        self,
        kernel_size: Pair,
        stride: Pair | None = None,
        padding: Pair = 0,
        ceil_mode: bool = False,
    ):
        self.kernel_size = _pair(kernel_size)
        # torch: stride defaults to the kernel size (lax/Flax default to 1).
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)
        self.ceil_mode = ceil_mode

    def _pads(self, x):
        pads = []
        for size, k, s, p in zip(x.shape[1:3], self.kernel_size, self.stride, self.padding):
            _, extra = _pool_geometry(size, k, s, p, self.ceil_mode)
            pads.append((p, p + extra))
        return tuple(pads)


class MaxPool2d(_Pool2d):
    """``torch.nn.MaxPool2d``: stride defaults to the kernel, pads with -inf, ``ceil_mode``.

    The gradient goes to the first maximal element of each window, as torch's does, and is
    summed in torch's order (``jaxconv.pooling``), so tied inputs get torch's gradients.
    """

    def forward(self, x):
        return max_pool(x, self.kernel_size, self.stride, self._pads(x))


class AvgPool2d(_Pool2d):
    """``torch.nn.AvgPool2d`` with ``ceil_mode`` and ``count_include_pad``.

    torch's divisor is the window clipped to the padded input (count_include_pad=True) or to the
    unpadded input (False); the extra high-side padding ceil_mode adds is never counted.
    """

    def __init__(
        self,
        kernel_size: Pair,
        stride: Pair | None = None,
        padding: Pair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = count_include_pad

    def forward(self, x):
        pads = self._pads(x)
        total = sum_pool(x, self.kernel_size, self.stride, pads)
        if self.padding == (0, 0) and all(hi == 0 for _, hi in pads):
            return total / (self.kernel_size[0] * self.kernel_size[1])
        # Divisor per output position: the window's cells that torch counts, clipped to the
        # padded input (count_include_pad) or to the input; separable in H and W. Plain numpy:
        # the geometry is static, so this stays a constant under jit.
        counts = []
        for size, k, s, (lo, _), out in zip(
            x.shape[1:3], self.kernel_size, self.stride, pads, total.shape[1:3]
        ):
            start = np.arange(out) * s - lo
            low, high = (-lo, size + lo) if self.count_include_pad else (0, size)
            counts.append(np.minimum(start + k, high) - np.maximum(start, low))
        counts = np.outer(*counts)[None, :, :, None]
        return total / jnp.asarray(counts, x.dtype)


def adaptive_bins(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """torch's AdaptiveAvgPool bins: [floor(i·in/out), ceil((i+1)·in/out))."""
    return [
        ((i * in_size) // out_size, -(-((i + 1) * in_size) // out_size)) for i in range(out_size)
    ]


def _bin_matrix(in_size: int, out_size: int) -> np.ndarray:
    m = np.zeros((out_size, in_size), np.float64)
    for i, (a, b) in enumerate(adaptive_bins(in_size, out_size)):
        m[i, a:b] = 1.0 / (b - a)
    return m


class AdaptiveAvgPool2d(Layer):
    """``torch.nn.AdaptiveAvgPool2d`` for any input/output size, with torch's bin formula.

    Done as two small averaging matrices (out_h×H and out_w×W), which is exact for overlapping
    bins too; (1, 1) is a plain mean.
    """

    def __init__(self, output_size: Pair):
        self.output_size = _pair(output_size)

    def forward(self, x):
        oh, ow = self.output_size
        h, w = x.shape[1:3]
        if (oh, ow) == (1, 1):
            return x.mean(axis=(1, 2), keepdims=True)
        if (oh, ow) == (h, w):
            return x
        mh = jnp.asarray(_bin_matrix(h, oh), x.dtype)
        mw = jnp.asarray(_bin_matrix(w, ow), x.dtype)
        return jnp.einsum('oh,nhwc,pw->nopc', mh, x, mw, precision=jax.lax.Precision.HIGHEST)


# --------------------------------------------------------------------------------------------
# Parameter-free layers (modules, so Sequential indices match torch's)
# --------------------------------------------------------------------------------------------
class Flatten(Layer):
    """``torch.nn.Flatten`` of an NHWC map in torch's C·H·W order (so torch Linear weights fit)."""

    def forward(self, x):
        if x.ndim == 4:
            x = jnp.transpose(x, (0, 3, 1, 2))
        return x.reshape(x.shape[0], -1)


class ReLU(Layer):
    def forward(self, x):
        return jax.nn.relu(x)


class Sigmoid(Layer):
    def forward(self, x):
        return jax.nn.sigmoid(x)


class Tanh(Layer):
    def forward(self, x):
        return jnp.tanh(x)


class LogSoftmax(Layer):
    def __init__(self, dim: int = -1):
        self.dim = dim

    def forward(self, x):
        return jax.nn.log_softmax(x, axis=self.dim)


class Dropout(Layer):
    """Inverted dropout (scale 1/(1-p)), like torch; ``model.eval()`` makes it the identity.

    The mask is drawn from the module's own ``rngs`` stream. Taps see the mask through
    ``Dropout.last_mask`` only when a tap is active, so parity tests can replay the same mask
    in torch.
    """

    def __init__(
        self, p: float = 0.5, *, deterministic: bool = False, rngs: nnx.Rngs | None = None
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f'dropout probability must be in [0, 1], got {p}')
        self.p = p
        self.deterministic = deterministic
        # Its own forked stream, as nnx.Dropout does: the mask sequence is a function of the seed.
        self.rngs = rngs['dropout'].fork() if rngs is not None else nnx.data(None)

    def make_mask(self, shape, dtype):
        if self.rngs is None:
            raise ValueError('Dropout in training mode needs rngs (pass rngs to create_model)')
        keep = jax.random.bernoulli(self.rngs(), 1.0 - self.p, shape)
        return keep.astype(dtype) / (1.0 - self.p)

    def forward(self, x, mask=None):
        if self.deterministic or self.p == 0.0:
            return x
        if self.p == 1.0:
            return jnp.zeros_like(x)
        if mask is None:
            mask = self.make_mask(x.shape, x.dtype)
        return x * mask


class Identity(Layer):
    def forward(self, x):
        return x


Sequential = nnx.Sequential


def named_layers(module: nnx.Module, prefix: str = '') -> list[tuple[str, nnx.Module]]:
    """All ``Layer`` instances under ``module`` with torch-style dotted names.

    ``nnx.Sequential`` keeps its children in ``.layers``; torch's ``nn.Sequential`` names them
    '0', '1', ..., so the ``layers`` level is dropped and the names match torch's state_dict.
    """
    out: list[tuple[str, nnx.Module]] = []

    def visit(obj, name):
        if isinstance(obj, Layer):
            out.append((name, obj))
            return
        if isinstance(obj, nnx.Sequential):
            for i, child in enumerate(obj.layers):
                visit(child, f'{name}.{i}' if name else str(i))
            return
        if isinstance(obj, (nnx.List, list, tuple)):
            for i, child in enumerate(obj):
                visit(child, f'{name}.{i}' if name else str(i))
            return
        if isinstance(obj, nnx.Module):
            for attr, child in vars(obj).items():
                if attr.startswith('_') or not isinstance(
                    child, (nnx.Module, nnx.List, list, tuple)
                ):
                    continue
                visit(child, f'{name}.{attr}' if name else attr)

    visit(module, prefix)
    return out
