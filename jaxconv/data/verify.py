"""Is this file the official one? Size and sha256 against what tensorflow-datasets registers.

A Fashion-MNIST file re-gzipped by Debian is accepted by the sha256 of its decompressed content,
and a caller may register extra checksums (``extra_checksums``) for private or synthetic copies.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import zlib
from collections.abc import Mapping
from pathlib import Path

from .errors import ChecksumError, DataError
from .info import get_spec

# Sha256 and size of the DECOMPRESSED official Fashion-MNIST files. Debian's
# `dataset-fashion-mnist` recompressed nothing but changed the gzip header (no
# stored name, its build time stamp), so only the content can be compared.
# Computed from the official files (shared/datasets/fashion-mnist, whose .gz
# match tfds's registered sha256).
FASHION_MNIST_CONTENT_SHA256: dict[str, tuple[int, str]] = {
    'train-images-idx3-ubyte.gz': (
        47040016,
        'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
    ),
    'train-labels-idx1-ubyte.gz': (
        60008,
        'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
    ),
    't10k-images-idx3-ubyte.gz': (
        7840016,
        '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
    ),
    't10k-labels-idx1-ubyte.gz': (
        10008,
        '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34',
    ),
}
_CONTENT_SHA256 = {'fashion_mnist': FASHION_MNIST_CONTENT_SHA256}

# CIFAR-10 also comes as the python archive (what torchvision downloads) alongside the binary
# one tfds reads. tensorflow-datasets registers no checksum for it: its size and sha256 are
# those Keras's cifar10.load_data checks (the CIFAR page publishes only its md5,
# c58f30108f718f92721af3b95e74349a).
_CIFAR10_PYTHON_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
_CIFAR10_PYTHON_SIZE = 170498071
_CIFAR10_PYTHON_SHA256 = '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce'


@dataclasses.dataclass(frozen=True)
class OfficialFile:
    """One official file with its checksum as registered by tensorflow-datasets."""

    dataset: str
    key: str
    filename: str
    url: str
    size: int
    sha256: str
    content: tuple[int, str] | None = None  # (size, sha256) after gunzip, where known
    registry: str = 'tensorflow-datasets'  # who publishes the size and sha256


def _builders():
    # Imported lazily: tfds is only needed to verify, prepare and read.
    from . import builders

    return builders


def tfds_name(name: str) -> str:
    return get_spec(name).tfds_name


def builder_class(name: str):
    """Our TF-free tfds builder class for ``name`` (``cifar2``: CIFAR-10's)."""
    return _builders().BUILDERS[tfds_name(name)]


def official_files(name: str) -> list[OfficialFile]:
    """The files the dataset is made from, with tfds's registered size and sha256."""
    tname = tfds_name(name)
    cls = builder_class(tname)
    infos = cls.url_infos or {}
    out = []
    for key, (filename, url) in cls.official_files().items():
        if url not in infos:
            raise DataError(
                f'tensorflow-datasets has no registered checksum for {url}; '
                f'cannot verify {filename}'
            )
        info = infos[url]
        out.append(
            OfficialFile(
                tname,
                key,
                filename,
                url,
                int(info.size),
                info.checksum,
                _CONTENT_SHA256.get(tname, {}).get(filename),
            )
        )
    return out


def cifar10_python_file() -> OfficialFile:
    """The python CIFAR-10 archive, an alternative to the binary one for --data-dir."""
    name = _builders().CIFAR10_PYTHON_FILENAME
    return OfficialFile(
        'cifar10',
        'archive',
        name,
        _CIFAR10_PYTHON_URL,
        _CIFAR10_PYTHON_SIZE,
        _CIFAR10_PYTHON_SHA256,
        registry="Keras's cifar10.load_data",
    )


def alternatives(name: str) -> list[OfficialFile]:
    """Other official files that may stand in for ``official_files(name)`` in --data-dir."""
    return [cifar10_python_file()] if tfds_name(name) == 'cifar10' else []


def _sha256(path: Path) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def _content_digest(path: Path) -> tuple[int, str] | None:
    """(size, sha256) of the gunzipped content, or None if it is not valid gzip."""
    h, n = hashlib.sha256(), 0
    try:
        with gzip.open(path, 'rb') as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                n += len(chunk)
    except (OSError, EOFError, zlib.error):  # not gzip, truncated, corrupt stream
        return None
    return n, h.hexdigest()


def _other_datasets_file(size: int, sha: str, this: str) -> OfficialFile | None:
    """The official file of ANOTHER dataset with this size and digest, if any."""
    for other in _builders().BUILDERS:
        if other == this:
            continue
        for f in official_files(other):
            if f.size == size and f.sha256 == sha:
                return f
    return None


def verify_file(
    path: os.PathLike | str,
    expected: OfficialFile,
    *,
    extra_checksums: Mapping[str, tuple[int, str]] | None = None,
) -> str:
    """Check one file; return how it matched, or raise naming the file.

    Accepted: tfds's registered (size, sha256); for Fashion-MNIST also a
    re-gzipped copy whose decompressed content has the official sha256; and
    any (size, sha256) the CALLER registered for this file name through
    ``extra_checksums`` (an explicit opt-in, used for synthetic test archives).
    A file that is another dataset's official file raises :class:`DataError`
    (wrong directory); anything else raises :class:`ChecksumError`.
    """
    path = Path(path)
    size = path.stat().st_size
    sha = _sha256(path)
    if (size, sha) == (expected.size, expected.sha256):
        return 'registered sha256'
    extra = (extra_checksums or {}).get(expected.filename)
    if extra is not None and (size, sha) == (int(extra[0]), extra[1]):
        return 'caller-registered sha256'
    if expected.content is not None and _content_digest(path) == expected.content:
        return 'sha256 of decompressed content'
    other = _other_datasets_file(size, sha, expected.dataset)
    if other is not None:
        raise DataError(
            f'{path} is the official {other.filename} of {other.dataset!r}, not of '
            f'{expected.dataset!r}: {path.parent} holds the wrong dataset. Pass the '
            f'directory with the {expected.dataset} files instead.'
        )
    what = 'truncated or incomplete' if size < expected.size else 'altered or a different file'
    raise ChecksumError(
        f'checksum mismatch for {expected.filename} ({path}): got {size} bytes, '
        f'sha256 {sha}; expected {expected.size} bytes, sha256 {expected.sha256} '
        f'(registered by {expected.registry} for {expected.url}). The file is {what}; '
        f'replace it with the official file.',
        path=path,
        filename=expected.filename,
    )
