"""What every jaxconv model shares: input checking, the minimum-image-size rule, the FC head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv import conv_lowering
from jaxconv.layers import Dropout, Linear, ReLU


class ImageSizeError(ValueError):
    """``image_size`` is too small for an architecture; ``minimum`` is the smallest that works."""

    def __init__(self, arch: str, image_size: int, minimum: int):
        super().__init__(f'{arch} needs image_size >= {minimum}, got {image_size}')
        self.arch, self.image_size, self.minimum = arch, image_size, minimum


class Classifier(nnx.Module):
    """Base of the registered models.

    ``arch`` is the registered name (``create_model`` passes it), so error messages name the
    model the user asked for. ``fixed_size`` is True when the head's size depends on the input
    size (e.g. a Linear after Flatten). Calling the model checks the input's shape first, so a
    wrong shape is one clear ``ValueError`` rather than an XLA error from deep inside. The
    default ``forward`` runs ``self.net``.
    """

    fixed_size: bool = False

    def __init__(self, arch: str, in_channels: int, image_size: int, dtype):
        self.arch, self.in_channels, self.image_size = arch, in_channels, image_size
        self.dtype = dtype

    def __call__(self, x):
        self.check_input(x)
        return self.forward(x)

    def forward(self, x):
        return self.net(x)

    def check_input(self, x):
        shape = tuple(getattr(x, 'shape', ()))
        c, s = self.in_channels, self.image_size
        expected = f'(N, {s}, {s}, {c})' if self.fixed_size else f'(N, H, W, {c})'
        if len(shape) != 4 or shape[-1] != c or (self.fixed_size and shape[1:3] != (s, s)):
            raise ValueError(f'{self.arch} expects NHWC input of shape {expected}, got {shape}')

    def require_image_size(self, fn: nnx.Module) -> tuple[int, ...]:
        """``require_image_size`` of ``fn`` at this model's input size, channels and dtype."""
        return require_image_size(self.arch, fn, self.image_size, self.in_channels, self.dtype)


def fc_head(
    in_features: int, num_classes: int, *, dropout: float, rngs, dtype, width: int = 4096
) -> list[nnx.Module]:
    """AlexNet's classifier, which VGG kept: two ``width``-wide Linear-ReLU-Dropout, a Linear.

    A list of layers, so a model can append it to its features in one ``Sequential`` (the
    course's flat indices, ``net.9`` ...) or wrap it as torchvision's ``classifier``.
    """
    return [
        Linear(in_features, width, dtype=dtype, rngs=rngs),
        ReLU(),
        Dropout(dropout, rngs=rngs),
        Linear(width, width, dtype=dtype, rngs=rngs),
        ReLU(),
        Dropout(dropout, rngs=rngs),
        Linear(width, num_classes, dtype=dtype, rngs=rngs),
    ]


def feature_shape(
    fn: nnx.Module, image_size: int, in_channels: int, dtype
) -> tuple[int, ...] | None:
    """Output shape of ``fn`` on a (1, S, S, C) input, or None when that input is too small."""
    x = jax.ShapeDtypeStruct((1, image_size, image_size, in_channels), dtype)
    graphdef, state = nnx.split(fn)

    def apply(state, x):
        # Run a merged copy in eval mode: ``fn``'s BatchNorm statistics and RNG counters stay
        # untouched, and a batch of one is valid.
        copy = nnx.merge(graphdef, state)
        copy.eval()
        return copy(x)

    try:
        with conv_lowering.lowering('heuristic'):  # shapes only: never autotune here
            out = jax.eval_shape(apply, state, x)
    except (ValueError, TypeError, IndexError):
        return None
    return tuple(out.shape) if min(out.shape) > 0 else None


def require_image_size(
    arch: str, fn: nnx.Module, image_size: int, in_channels: int, dtype=jnp.float32
) -> tuple[int, ...]:
    """Shape of ``fn``'s output at ``image_size``; a ValueError naming the minimum when too
    small."""
    shape = feature_shape(fn, image_size, in_channels, dtype)
    if shape is not None:
        return shape
    lo, hi = image_size + 1, max(2 * image_size, 16)
    while feature_shape(fn, hi, in_channels, dtype) is None:
        lo, hi = hi + 1, hi * 2
        if hi > 4096:
            raise ValueError(f'{arch}: no image size up to 4096 works')
    while lo < hi:  # smallest working size; the valid sizes are an upward-closed range
        mid = (lo + hi) // 2
        if feature_shape(fn, mid, in_channels, dtype) is None:
            lo = mid + 1
        else:
            hi = mid
    raise ImageSizeError(arch, image_size, lo)
