"""Decoded arrays cached as ``.npz`` next to the data they come from: written atomically.

A prepared tfds split is decoded once into ``<version>/jaxconv_cache/<split>.npz``; later loads
read that file in a fraction of the decoding time. The cache lives inside the prepared dataset,
so deleting the dataset deletes it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

_SPLIT_CACHE_DIR = 'jaxconv_cache'
_SPLIT_CACHE_FORMAT = 1


def write_npz_atomic(path: Path, **arrays) -> None:
    """Best effort (a read-only directory just means no cache); a reader never sees half a
    file: written to a temporary file beside ``path``, then renamed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix='.npz.tmp', dir=path.parent)
        try:
            with os.fdopen(fd, 'wb') as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass


def _split_cache_path(builder, split: str) -> Path:
    return Path(builder.data_dir) / _SPLIT_CACHE_DIR / f'{split}.npz'


def read_split_cache(builder, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (images, labels) of a prepared split, or None if absent, unreadable or not
    the shape the dataset info says (then the split is decoded again)."""
    path = _split_cache_path(builder, split)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            images, labels, fmt = z['images'], z['labels'], int(z['format'])
    except Exception:  # unreadable or partial cache: ignore it, decode again
        return None
    n = builder.info.splits[split].num_examples
    shape = tuple(builder.info.features['image'].shape)
    if fmt != _SPLIT_CACHE_FORMAT or images.shape != (n, *shape) or labels.shape != (n,):
        return None
    return images, labels


def write_split_cache(builder, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    write_npz_atomic(
        _split_cache_path(builder, split),
        images=images,
        labels=labels,
        format=np.int64(_SPLIT_CACHE_FORMAT),
    )
