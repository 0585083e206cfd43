"""Host-side batching (numpy, uint8) and device-side preprocessing (jnp, jittable).

Why split it this way: the host only gathers uint8 batches (one fancy-index per
batch, 4x fewer bytes than float32 to move), and the float conversion, padding
or resizing and normalisation run inside the jitted training step, where XLA
fuses them with the first layer.

Determinism: the order of an epoch is a pure function of ``(seed, epoch)``, so
a run resumed from a checkpoint at ``(epoch, step)`` sees exactly the batches
the uninterrupted run would have seen, whatever happened before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .augment import augment as apply_augmentation

#: Largest margin (target - source, per side pair) bridged by zero padding
#: instead of resizing: 28 -> 32 reproduces the classic LeNet-style padding.
MAX_PAD_MARGIN = 8


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Number of (global) batches in one epoch of ``n`` examples."""
    if batch_size <= 0:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_permutation(n: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The example order of one epoch: a pure function of ``(seed, epoch)``.

    Seeding a fresh Generator with both (rather than advancing one generator
    epoch after epoch) is what makes resuming mid-run exact.
    """
    if not shuffle:
        return np.arange(n)
    if seed < 0 or epoch < 0:
        raise ValueError(f'seed and epoch must be non-negative, got {seed}, {epoch}')
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def _local_range(batch_size: int, process_index: int, process_count: int) -> tuple[int, int]:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f'process_index must be in [0, process_count), got {process_index} of {process_count}'
        )
    if batch_size % process_count:
        raise ValueError(
            f'the global batch size {batch_size} does not divide by the '
            f'{process_count} processes; choose a batch size that is a '
            f'multiple of {process_count}'
        )
    local = batch_size // process_count
    return process_index * local, (process_index + 1) * local


def epoch_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_last: bool = True,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(x uint8 (B_local, H, W, C), y int32 (B_local,))`` for one epoch.

    ``batch_size`` is the GLOBAL batch size; each process yields its contiguous
    slice ``[p * B/P, (p+1) * B/P)`` of every global batch, so the slices of all
    processes concatenate to the single-process batch. Steps before
    ``start_step`` are skipped without any work. With ``drop_last=False`` the
    last, partial batch is yielded as is (for several processes its slices may
    be uneven or empty: use :func:`eval_batches` there, which pads).
    """
    lo, hi = _local_range(batch_size, process_index, process_count)
    n = len(images)
    if len(labels) != n:
        raise ValueError(f'{n} images but {len(labels)} labels')
    steps = steps_per_epoch(n, batch_size, drop_last)
    if not 0 <= start_step <= steps:
        raise ValueError(f'start_step {start_step} outside [0, {steps}] for this epoch')
    labels = np.asarray(labels, np.int32)
    perm = epoch_permutation(n, seed=seed, epoch=epoch, shuffle=shuffle)

    def gen():
        for step in range(start_step, steps):
            idx = perm[step * batch_size : (step + 1) * batch_size][lo:hi]
            yield images[idx], labels[idx]  # one gather each

    return gen()


def pad_batch(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a short batch with zeros to ``batch_size``; return ``(x, y, mask)``.

    A fixed batch shape avoids a recompile for the last batch; ``mask`` (bool)
    marks the real examples so metrics count exactly N.
    """
    k = len(x)
    if k > batch_size:
        raise ValueError(f'batch of {k} is larger than batch_size {batch_size}')
    mask = np.zeros(batch_size, bool)
    mask[:k] = True
    if k == batch_size:
        return x, y, mask
    xp = np.zeros((batch_size, *x.shape[1:]), x.dtype)
    yp = np.zeros((batch_size, *y.shape[1:]), y.dtype)
    xp[:k], yp[:k] = x, y
    return xp, yp, mask


def eval_batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(x, y, mask)`` covering every example exactly once, in order.

    Every batch has the full local shape (``batch_size / process_count``); the
    last global batch is padded BEFORE it is split among processes, so all
    processes run the same number of steps with the same shapes and the masks
    add up to N over all processes.
    """
    lo, hi = _local_range(batch_size, process_index, process_count)
    n = len(images)
    if len(labels) != n:
        raise ValueError(f'{n} images but {len(labels)} labels')
    labels = np.asarray(labels, np.int32)

    def gen():
        for start in range(0, n, batch_size):
            a, b = min(start + lo, n), min(start + hi, n)
            yield pad_batch(images[a:b], labels[a:b], hi - lo)

    return gen()


def _pads(src: int, dst: int) -> bool:
    margin = dst - src
    return 0 < margin <= MAX_PAD_MARGIN and margin % 2 == 0


def preprocess(
    x_uint8: jax.Array | np.ndarray,
    *,
    image_size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    dtype=jnp.float32,
    augment: str = 'none',
    key: jax.Array | None = None,
) -> jax.Array:
    """uint8 NHWC -> normalised ``dtype`` NHWC of spatial size ``image_size``. Jittable.

    1. to float in [0, 1] (``/ 255``, as ``ToTensor``);
    2. to ``(image_size, image_size)``: unchanged if equal; symmetric zero padding
       (0 in pixel space, i.e. black, before normalising) if each side grows by an
       even margin <= 8, e.g. 28 -> 32; otherwise bilinear ``jax.image.resize``
       with ``antialias=True``. That matches torchvision's ``Resize`` applied to a
       float TENSOR (its default since 0.17, i.e. ``F.interpolate(...,
       mode='bilinear', align_corners=False, antialias=True)``): half-pixel
       centres; antialias only changes downsampling. (A ``Resize`` on PIL images
       would round to uint8 first and differ by up to 0.5/255.)
    3. training only: ``augment`` (:mod:`jaxconv.data.augment`, drawn from ``key``) on the
       [0, 1] image of the final size, so crops pad with black as torchvision's do;
    4. ``(x - mean) / std`` per channel, then cast to ``dtype`` (computed in f32).

    ``image_size``, ``mean``, ``std`` and ``augment`` are Python constants (static under jit).
    Also accepts a single (H, W, C) image.
    """
    x = jnp.asarray(x_uint8).astype(jnp.float32) / 255.0
    if x.ndim not in (3, 4):
        raise ValueError(f'expected (N, H, W, C) or (H, W, C), got shape {x.shape}')
    th, tw = (image_size, image_size) if np.ndim(image_size) == 0 else tuple(image_size)
    h, w, c = x.shape[-3:]
    if (h, w) == (th, tw):
        pass
    elif _pads(h, th) and _pads(w, tw):
        ph, pw = (th - h) // 2, (tw - w) // 2
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(ph, ph), (pw, pw), (0, 0)])
    else:
        x = jax.image.resize(x, (*x.shape[:-3], th, tw, c), method='bilinear', antialias=True)
    x = apply_augmentation(x, key, augment)
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    if mean.shape not in ((1,), (c,)) or std.shape not in ((1,), (c,)):
        raise ValueError(f'mean/std need 1 or {c} values, got {mean.shape}, {std.shape}')
    return ((x - mean) / std).astype(dtype)
