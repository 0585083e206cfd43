"""Prepare a dataset into the tfds data dir (once, atomically, one process at a time) and read a
prepared split back as numpy arrays.

Preparation is atomic: tfds writes into ``<name>/incomplete.XXXXXX_<version>`` and renames it to
``<name>/<version>`` only after every split and the dataset info are written (and deletes it on
an exception), so an interrupted run leaves nothing that :func:`is_prepared` (which needs
``dataset_info.json`` and ``features.json`` in ``<version>``) would accept. A file lock
serialises concurrent preparations (e.g. two JAX processes on one machine).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from filelock import FileLock

from .cache import read_split_cache, write_split_cache
from .errors import ChecksumError, DataError
from .verify import builder_class, tfds_name


def tfds_data_dir(tfds_dir: os.PathLike | str | None = None) -> Path:
    """``tfds_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    d = tfds_dir or os.environ.get('TFDS_DATA_DIR') or '~/tensorflow_datasets'
    return Path(d).expanduser().absolute()


def is_prepared(builder) -> bool:
    """tfds's own test (dataset_info.json and features.json in <name>/<version>),
    without its warning for a version folder that does not exist yet."""
    return (Path(builder.data_dir) / 'dataset_info.json').is_file() and builder.is_prepared()


def make_builder(
    name: str,
    tfds_dir: os.PathLike | str | None = None,
    *,
    local_files: Mapping[str, os.PathLike | str] | None = None,
):
    """Our TF-free builder for ``name`` rooted at the tfds data dir."""
    from .builders import FILE_FORMAT

    return builder_class(name)(
        data_dir=os.fspath(tfds_data_dir(tfds_dir)),
        file_format=FILE_FORMAT,
        local_files=local_files,
    )


def _prepare_lock(root: Path, tname: str) -> FileLock:
    """Exclusive lock so two processes never prepare the same dataset at once.

    ``flock`` on ``<root>/.<name>.jaxconv-lock``: the kernel drops it when its holder dies, so a
    killed preparation leaves no stale lock; a waiter blocks until the holder is done.
    """
    if root.exists() and not root.is_dir():
        raise DataError(
            f'the tfds data dir {root} is not a directory; pass --tfds-dir DIR '
            f'(load_split(..., tfds_dir=DIR)) naming a directory'
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # no permission, read-only file system, a file higher up
        raise DataError(
            f'cannot create the tfds data dir {root} ({e.strerror}); pass '
            f'--tfds-dir DIR naming a writable directory'
        ) from None
    return FileLock(root / f'.{tname}.jaxconv-lock')


def prepare(
    name: str,
    tfds_dir: os.PathLike | str | None = None,
    *,
    local_files: Mapping[str, os.PathLike | str] | None = None,
):
    """Prepare ``name`` into the tfds data dir unless already there; return the builder.

    ``local_files`` must already be verified (see :func:`jaxconv.data.find_official_files`);
    without them tfds downloads and verifies the registered URLs.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    root = tfds_data_dir(tfds_dir)
    with _prepare_lock(root, tfds_name(name)):
        builder = make_builder(name, root, local_files=local_files)
        if not is_prepared(builder):
            try:
                builder.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False)
                )
            except NonMatchingChecksumError as e:
                raise ChecksumError(str(e)) from e
            # Re-open: the builder now reads its info from the prepared directory.
            builder = make_builder(name, root)
    return builder


def read_prepared(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All examples of a prepared split as (uint8 NHWC images, int32 labels), from the split
    cache when it is there (see :mod:`jaxconv.data.cache`)."""
    cached = read_split_cache(builder, split)
    if cached is not None:
        return cached
    try:
        source = builder.as_data_source(split=split)
    except NotImplementedError as e:  # e.g. prepared by tfds in tfrecord format
        raise DataError(
            f'{builder.data_dir} holds {builder.name} in a format that cannot be '
            f'read without TensorFlow ({e}); delete it so that it is prepared '
            f'again as array_record'
        ) from e
    n = len(source)
    shape = tuple(builder.info.features['image'].shape)
    images = np.empty((n, *shape), np.uint8)
    labels = np.empty((n,), np.int32)
    chunk = 2048
    for start in range(0, n, chunk):
        for i, ex in enumerate(
            source.__getitems__(list(range(start, min(start + chunk, n)))), start
        ):
            images[i] = ex['image']
            labels[i] = ex['label']
    write_split_cache(builder, split, images, labels)
    return images, labels
