"""Model registry: a decorator over a dict (as torchvision's ``_api.py`` and timm do).

``create_model(name, ...)`` is the one way models are built, so every test, the parity
harness and ``train.py --arch`` see the same list: ``list_models()``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

_MODELS: dict[str, Callable[..., nnx.Module]] = {}


def register_model(fn: Callable[..., nnx.Module] | None = None, *, name: str | None = None):
    """Register a builder under its function name (or ``name``); duplicates are an error.

    ``create_model`` calls the builder with ``arch=`` the registered name, so a model names
    itself as the user asked for it.
    """

    def wrap(f):
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f'model {key!r} is already registered')
        _MODELS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_models(pattern: str = '*') -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _ensure_loaded()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    rngs: nnx.Rngs | None = None,
    dtype=jnp.float32,
    **kw,
) -> nnx.Module:
    """Build the registered model ``name``; ``model(x)`` maps (N, H, W, C) to (N, num_classes).

    ``dtype=jnp.float64`` builds float64 parameters and computation (needs
    ``jax.config.update('jax_enable_x64', True)``). ``rngs`` defaults to ``nnx.Rngs(0)``.
    """
    _ensure_loaded()
    if name not in _MODELS:
        raise ValueError(f'unknown model {name!r}; choose one of: {", ".join(sorted(_MODELS))}')
    for arg, value in (
        ('num_classes', num_classes),
        ('in_channels', in_channels),
        ('image_size', image_size),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f'{arg} must be a positive integer, got {value!r}')
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            'dtype=float64 needs jax_enable_x64: call '
            "jax.config.update('jax_enable_x64', True) first"
        )
    if rngs is None:
        rngs = nnx.Rngs(0)
    return _MODELS[name](
        arch=name,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        rngs=rngs,
        dtype=dtype,
        **kw,
    )


def min_image_size(name: str, *, in_channels: int = 3) -> int:
    """The smallest ``image_size`` that ``create_model(name)`` accepts."""
    from jaxconv.models.base import ImageSizeError

    try:
        create_model(name, image_size=1, in_channels=in_channels, num_classes=2)
    except ImageSizeError as e:
        return e.minimum
    return 1


def _ensure_loaded():
    # The families register themselves on import; importing here keeps `jaxconv.registry`
    # usable on its own.
    import jaxconv.models  # noqa: F401
