"""Where a split comes from: :func:`load_split`, the one entry point the training loop needs.

It looks, in order, at:

(a) ``data_dir``, when given: a directory holding the official files. They are
    verified against tensorflow-datasets' registered sha256 and size, prepared
    into the tfds data dir (if not prepared there already) and read back.
    Errors here are raised, never skipped: the caller asked for this directory.
(b) a dataset already prepared in the tfds data dir (``tfds_dir``, else
    ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``), by us or by tfds.
(c) Fashion-MNIST only: the files of the Debian package
    ``dataset-fashion-mnist`` (found with ``dpkg-query -L``). Debian rewrote
    their gzip headers, so their sha256 differs from the registered one; they
    are accepted when their DECOMPRESSED content has the official sha256.
(d) the normal tfds download (needs a network; tfds verifies the checksums).

If none works, :class:`DatasetNotFoundError` says which files are expected,
where it looked and how to supply them. Checking a file is :mod:`.verify`'s job,
finding one :mod:`.locate`'s, preparing and reading :mod:`.prepare`'s (with the
decoded-array cache of :mod:`.cache`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .errors import DataError, DatasetNotFoundError
from .info import CIFAR2_SOURCE_LABELS, SPLITS, get_spec
from .locate import (
    OS_PACKAGES,
    download_unreachable,
    find_official_files,
    find_os_package_files,
    not_found_message,
)
from .prepare import is_prepared, make_builder, prepare, read_prepared, tfds_data_dir


def _download(tname: str, split: str, root, looked: list[str]):
    """(d): the split through tfds's download, or None with the reason appended to ``looked``."""
    if offline := download_unreachable(tname):
        looked.append(f'tfds download: skipped, {offline}')
        return None
    try:
        return read_prepared(prepare(tname, root), split)
    except DataError:
        raise
    except Exception as e:  # no network, proxy, DNS...: report, do not crash
        first = (str(e).strip().splitlines() or [''])[0][:300]
        looked.append(f'tfds download into {root}: failed ({type(e).__name__}: {first})')
        return None


def _load_tfds_split(
    tname: str,
    split: str,
    *,
    data_dir,
    tfds_dir,
    download: bool,
    use_os_package: bool,
    extra_checksums,
) -> tuple[np.ndarray, np.ndarray]:
    root = tfds_data_dir(tfds_dir)
    if data_dir is not None:  # (a)
        files = find_official_files(tname, data_dir, extra_checksums=extra_checksums)
        return read_prepared(prepare(tname, root, local_files=files), split)

    builder = make_builder(tname, root)  # (b)
    if is_prepared(builder):
        return read_prepared(builder, split)
    looked = [f'prepared tfds dataset: {builder.data_dir} (not there)']

    if use_os_package and tname in OS_PACKAGES:  # (c)
        files, where = find_os_package_files(tname)
        if files is not None:
            return read_prepared(prepare(tname, root, local_files=files), split)
        looked.append(where)

    if not download:  # (d)
        looked.append('tfds download: not attempted (download=False)')
    elif (loaded := _download(tname, split, root, looked)) is not None:
        return loaded
    raise DatasetNotFoundError(not_found_message(tname, looked))


def _cifar2(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's cats and dogs, relabelled 0 and 1."""
    keep = np.isin(labels, CIFAR2_SOURCE_LABELS)
    return images[keep], np.searchsorted(np.asarray(CIFAR2_SOURCE_LABELS), labels[keep]).astype(
        np.int32
    )


def load_split(
    name: str,
    split: str,
    *,
    data_dir: os.PathLike | str | None = None,
    tfds_dir: os.PathLike | str | None = None,
    download: bool = True,
    use_os_package: bool = True,
    extra_checksums: Mapping[str, tuple[int, str]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split as ``(images uint8 (N, H, W, C), labels int32 (N,))``.

    name: 'fashion_mnist', 'mnist', 'cifar10' or 'cifar2' (CIFAR-10 cats and dogs
    relabelled 0/1). split: 'train' or 'test'. The module docstring gives the
    lookup order. ``download=False`` and ``use_os_package=False`` switch off
    lookups (c) and (d), e.g. for hermetic tests. ``extra_checksums`` maps a file
    name to an additional accepted ``(size, sha256)``: an explicit opt-in for
    private or synthetic copies; the registered checksums are still accepted.
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f'unknown split {split!r}; choose one of {", ".join(SPLITS)}')
    try:
        images, labels = _load_tfds_split(
            spec.tfds_name,
            split,
            data_dir=data_dir,
            tfds_dir=tfds_dir,
            download=download,
            use_os_package=use_os_package,
            extra_checksums=extra_checksums,
        )
    except DatasetNotFoundError as e:
        if name == spec.tfds_name:
            raise
        raise DatasetNotFoundError(
            f'{name!r} is made from {spec.tfds_name!r}, which is needed.\n{e}'
        ) from e
    return _cifar2(images, labels) if name == 'cifar2' else (images, labels)
