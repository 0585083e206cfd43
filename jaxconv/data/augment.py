"""Training-time augmentation on the device, inside the jitted step: ``none``, ``flip``,
``crop-flip``.

``crop-flip`` is the standard CIFAR recipe (torchvision's ``RandomCrop(S, padding=4)`` then
``RandomHorizontalFlip(0.5)``): each image is zero-padded by 4 pixels on every side and an S x S
window is cut at a uniformly drawn offset in [0, 8] x [0, 8], then mirrored left-right with
probability 1/2. ``flip`` is the mirror alone. It runs on images in [0, 1] before normalisation,
so the padding is black, as torchvision pads the un-normalised tensor.

Randomness: every draw comes from the key handed in, which the train step derives as
``fold_in(augment_key(seed), step)``: the crops of step k depend on (seed, k) only, so a resumed
run draws what the uninterrupted run drew, and the values do not depend on how the batch is
sharded over devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUGMENTATIONS = ('none', 'flip', 'crop-flip')

#: Zero padding of ``crop-flip`` per side, in pixels.
CROP_PADDING = 4


def augment_key(seed: int) -> jax.Array:
    """Root of the per-step augmentation keys; distinct from the params and dropout streams."""
    return jax.random.fold_in(jax.random.key(seed), 0x61756720)  # 'aug '


def random_flip(x: jax.Array, key: jax.Array) -> jax.Array:
    """Mirror each image of ``x`` (N, H, W, C) left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
    return jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)


def random_crop(x: jax.Array, key: jax.Array, padding: int = CROP_PADDING) -> jax.Array:
    """Zero-pad ``x`` (N, H, W, C) by ``padding`` per side and cut each image's H x W window at
    its own uniform offset in [0, 2 * padding] (both axes)."""
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def augment(x: jax.Array, key: jax.Array | None, mode: str) -> jax.Array:
    """Apply augmentation ``mode`` (one of :data:`AUGMENTATIONS`) to a batch (N, H, W, C).

    ``mode`` is a Python constant (static under jit); ``key`` may be None for 'none'.
    """
    if mode not in AUGMENTATIONS:
        raise ValueError(f'unknown augmentation {mode!r}; choose one of {", ".join(AUGMENTATIONS)}')
    if mode == 'none':
        return x
    if x.ndim != 4:
        raise ValueError(f'augmentation needs a batch (N, H, W, C), got shape {x.shape}')
    crop_key, flip_key = jax.random.split(key)
    if mode == 'crop-flip':
        x = random_crop(x, crop_key)
    return random_flip(x, flip_key)
