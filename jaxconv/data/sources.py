"""Finding, verifying, preparing and loading the datasets as numpy arrays.

:func:`load_split` is the one entry point the training loop needs. It looks, in
order, at:

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
where it looked and how to supply them.

Preparation is atomic: tfds writes into ``<name>/incomplete.XXXXXX_<version>``
and renames it to ``<name>/<version>`` only after every split and the dataset
info are written (and deletes it on an exception), so an interrupted run leaves
nothing that :meth:`is_prepared` (which needs ``dataset_info.json`` and
``features.json`` in ``<version>``) would accept. A file lock serialises
concurrent preparations (e.g. two JAX processes on one machine).

Decoding 60k PNGs through tfds takes about 5 s on two cores, so the decoded
arrays are cached as ``<version>/jaxconv_cache/<split>.npz`` (written to a
temporary name and renamed) and later loads take a fraction of a second. The
cache lives inside the prepared dataset so that deleting the dataset deletes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import os
import shutil
import subprocess
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import ChecksumError, DataError, DatasetNotFoundError
from .info import CIFAR2_SOURCE_LABELS, DATASETS, SPLITS, get_spec
from .npz_cache import write_npz_atomic

# Sha256 and size of the DECOMPRESSED official Fashion-MNIST files. Debian's
# `dataset-fashion-mnist` recompressed nothing but changed the gzip header (no
# stored name, its build time stamp), so only the content can be compared.
# Computed from the official files (shared/datasets/fashion-mnist, whose .gz
# match tfds's registered sha256).
FASHION_MNIST_CONTENT_SHA256: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte.gz": (
        47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte.gz": (
        60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte.gz": (
        7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte.gz": (
        10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
_CONTENT_SHA256 = {"fashion_mnist": FASHION_MNIST_CONTENT_SHA256}

OS_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}

# Sub-directory names tried when ``data_dir`` is a parent of per-dataset
# folders (e.g. shared/datasets with fashion-mnist/ and mnist/ inside).
_SUBDIR_NAMES = {
    "fashion_mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST"),
    "mnist": ("mnist", "MNIST"),
    "cifar10": ("cifar-10", "cifar10", "CIFAR10"),
}

_CACHE_DIR = "jaxconv_cache"
_CACHE_FORMAT = 1

# CIFAR-10 also comes as the python archive (what torchvision downloads) alongside the binary
# one tfds reads. tensorflow-datasets registers no checksum for it: its size and sha256 are
# those Keras's cifar10.load_data checks (the CIFAR page publishes only its md5,
# c58f30108f718f92721af3b95e74349a).
_CIFAR10_PYTHON_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_PYTHON_SIZE = 170498071
_CIFAR10_PYTHON_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


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
    registry: str = "tensorflow-datasets"  # who publishes the size and sha256


def _builders():
    # Imported lazily: tfds is only needed to verify, prepare and read.
    from . import builders
    return builders


def _tfds_name(name: str) -> str:
    return get_spec(name).tfds_name


def official_files(name: str) -> list[OfficialFile]:
    """The files the dataset is made from, with tfds's registered size and sha256."""
    tname = _tfds_name(name)
    cls = _builders().BUILDERS[tname]
    infos = cls.url_infos or {}
    out = []
    for key, (filename, url) in cls.official_files().items():
        if url not in infos:
            raise DataError(f"tensorflow-datasets has no registered checksum for {url}; "
                            f"cannot verify {filename}")
        info = infos[url]
        out.append(OfficialFile(tname, key, filename, url, int(info.size), info.checksum,
                                _CONTENT_SHA256.get(tname, {}).get(filename)))
    return out


def cifar10_python_file() -> OfficialFile:
    """The python CIFAR-10 archive, an alternative to the binary one for --data-dir."""
    name = _builders().CIFAR10_PYTHON_FILENAME
    return OfficialFile("cifar10", "archive", name, _CIFAR10_PYTHON_URL, _CIFAR10_PYTHON_SIZE,
                        _CIFAR10_PYTHON_SHA256, registry="Keras's cifar10.load_data")


def _alternatives(name: str) -> list[OfficialFile]:
    """Other official files that may stand in for ``official_files(name)`` in --data-dir."""
    return [cifar10_python_file()] if _tfds_name(name) == "cifar10" else []


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _content_digest(path: Path) -> tuple[int, str] | None:
    """(size, sha256) of the gunzipped content, or None if it is not valid gzip."""
    h, n = hashlib.sha256(), 0
    try:
        with gzip.open(path, "rb") as f:
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


def verify_file(path: os.PathLike | str, expected: OfficialFile, *,
                extra_checksums: Mapping[str, tuple[int, str]] | None = None) -> str:
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
        return "registered sha256"
    extra = (extra_checksums or {}).get(expected.filename)
    if extra is not None and (size, sha) == (int(extra[0]), extra[1]):
        return "caller-registered sha256"
    if expected.content is not None and _content_digest(path) == expected.content:
        return "sha256 of decompressed content"
    other = _other_datasets_file(size, sha, expected.dataset)
    if other is not None:
        raise DataError(
            f"{path} is the official {other.filename} of {other.dataset!r}, not of "
            f"{expected.dataset!r}: {path.parent} holds the wrong dataset. Pass the "
            f"directory with the {expected.dataset} files instead.")
    what = "truncated or incomplete" if size < expected.size else "altered or a different file"
    raise ChecksumError(
        f"checksum mismatch for {expected.filename} ({path}): got {size} bytes, "
        f"sha256 {sha}; expected {expected.size} bytes, sha256 {expected.sha256} "
        f"(registered by {expected.registry} for {expected.url}). The file is {what}; "
        f"replace it with the official file.",
        path=path, filename=expected.filename)


def _locate_dir(name: str, data_dir: Path) -> Path:
    """``data_dir`` itself, or its per-dataset sub-folder if only that holds the files."""
    names = {f.filename for f in official_files(name) + _alternatives(name)}
    if any((data_dir / n).exists() for n in names):
        return data_dir
    for sub in _SUBDIR_NAMES.get(_tfds_name(name), ()):
        if any((data_dir / sub / n).exists() for n in names):
            return data_dir / sub
    return data_dir


def find_official_files(name: str, data_dir: os.PathLike | str, *,
                        extra_checksums: Mapping[str, tuple[int, str]] | None = None,
                        ) -> dict[str, Path]:
    """Verified official files in ``data_dir``: key -> path (see :func:`verify_file`)."""
    root = Path(data_dir).expanduser()
    expected = official_files(name)
    if not root.exists():
        raise DatasetNotFoundError(_not_found_message(
            name, [f"--data-dir {root}: does not exist"]))
    if not root.is_dir():
        raise DataError(f"--data-dir {root} is not a directory; pass the directory that "
                        f"holds {', '.join(f.filename for f in expected)}")
    d = _locate_dir(name, root)
    if not any(d.iterdir()):
        raise DatasetNotFoundError(_not_found_message(name, [f"--data-dir {d}: is empty"]))
    missing = [f.filename for f in expected if not (d / f.filename).is_file()]
    for alt in _alternatives(name):  # e.g. the python CIFAR-10 archive for the binary one
        if missing == [f.filename for f in expected if f.key == alt.key] and \
                (d / alt.filename).is_file():
            verify_file(d / alt.filename, alt, extra_checksums=extra_checksums)
            return {alt.key: d / alt.filename}
    if missing:
        present = sorted(p.name for p in d.iterdir())[:20]
        raise DatasetNotFoundError(_not_found_message(
            name, [f"--data-dir {d}: missing {', '.join(missing)} "
                   f"(it holds: {', '.join(present)})"]))
    for f in expected:
        verify_file(d / f.filename, f, extra_checksums=extra_checksums)
    return {f.key: d / f.filename for f in expected}


def find_os_package_files(name: str) -> tuple[dict[str, Path] | None, str]:
    """Verified files of the OS package for ``name`` (Debian), or None and why not."""
    tname = _tfds_name(name)
    pkg = OS_PACKAGES.get(tname)
    if pkg is None:
        return None, f"no OS package ships {tname}"
    exe = shutil.which("dpkg-query")
    if exe is None:
        return None, f"OS package {pkg}: dpkg-query not found (not a Debian-like system)"
    try:
        res = subprocess.run([exe, "-L", pkg], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"OS package {pkg}: dpkg-query failed ({e})"
    if res.returncode != 0:
        return None, f"OS package {pkg}: not installed"
    listed = {Path(line).name: Path(line) for line in res.stdout.splitlines()
              if line.endswith(".gz")}
    files = {}
    for f in official_files(tname):
        p = listed.get(f.filename)
        if p is None or not p.is_file():
            return None, f"OS package {pkg}: installed but {f.filename} is missing"
        verify_file(p, f)  # a damaged system copy is an error worth stopping for
        files[f.key] = p
    return files, f"OS package {pkg}"


def _not_found_message(name: str, looked: list[str]) -> str:
    tname = _tfds_name(name)
    cls = _builders().BUILDERS[tname]
    files = official_files(tname)
    lines = [f"{DATASETS[tname].display_name} (tfds {tname!r} {cls.VERSION}) was not found.",
             "Expected files (the official release; checked against the sha256 and size "
             "registered by tensorflow-datasets):"]
    lines += [f"  {f.filename}  ({f.size} bytes, {f.url})" for f in files]
    lines += [f"  or {f.filename}  ({f.size} bytes, {f.url})" for f in _alternatives(tname)]
    lines.append("Looked in:")
    lines += [f"  - {x}" for x in looked]
    lines.append("To supply it, do one of:")
    lines.append(f"  - pass --data-dir DIR (load_split(..., data_dir=DIR)), DIR holding "
                 f"the file{'s' if len(files) > 1 else ''} above;")
    if tname in OS_PACKAGES:
        lines.append(f"  - sudo apt-get install {OS_PACKAGES[tname]}  (Debian/Ubuntu);")
    lines.append("  - run once with network access: tensorflow-datasets then downloads and "
                 "prepares it into the tfds data dir.")
    return "\n".join(lines)


def tfds_data_dir(tfds_dir: os.PathLike | str | None = None) -> Path:
    """``tfds_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    d = tfds_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return Path(d).expanduser().absolute()


def is_prepared(builder) -> bool:
    """tfds's own test (dataset_info.json and features.json in <name>/<version>),
    without its warning for a version folder that does not exist yet."""
    return (Path(builder.data_dir) / "dataset_info.json").is_file() and builder.is_prepared()


def make_builder(name: str, tfds_dir: os.PathLike | str | None = None, *,
                 local_files: Mapping[str, os.PathLike | str] | None = None):
    """Our TF-free builder for ``name`` rooted at the tfds data dir."""
    from .builders import FILE_FORMAT
    cls = _builders().BUILDERS[_tfds_name(name)]
    return cls(data_dir=os.fspath(tfds_data_dir(tfds_dir)), file_format=FILE_FORMAT,
               local_files=local_files)


@contextlib.contextmanager
def _prepare_lock(root: Path, tname: str):
    """Exclusive lock so two processes never prepare the same dataset at once."""
    if root.exists() and not root.is_dir():
        raise DataError(f"the tfds data dir {root} is not a directory; pass --tfds-dir DIR "
                        f"(load_split(..., tfds_dir=DIR)) naming a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # no permission, read-only file system, a file higher up
        raise DataError(f"cannot create the tfds data dir {root} ({e.strerror}); pass "
                        f"--tfds-dir DIR naming a writable directory") from None
    with open(root / f".{tname}.jaxconv-lock", "a+") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking, tfds's atomic rename still holds
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare(name: str, tfds_dir: os.PathLike | str | None = None, *,
            local_files: Mapping[str, os.PathLike | str] | None = None):
    """Prepare ``name`` into the tfds data dir unless already there; return the builder.

    ``local_files`` must already be verified (see :func:`find_official_files`);
    without them tfds downloads and verifies the registered URLs.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    root = tfds_data_dir(tfds_dir)
    with _prepare_lock(root, _tfds_name(name)):
        builder = make_builder(name, root, local_files=local_files)
        if not is_prepared(builder):
            try:
                builder.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False))
            except NonMatchingChecksumError as e:
                raise ChecksumError(str(e)) from e
            # Re-open: the builder now reads its info from the prepared directory.
            builder = make_builder(name, root)
    return builder


def _cache_path(builder, split: str) -> Path:
    return Path(builder.data_dir) / _CACHE_DIR / f"{split}.npz"


def _read_cache(builder, split: str):
    path = _cache_path(builder, split)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            images, labels, fmt = z["images"], z["labels"], int(z["format"])
    except Exception:  # unreadable or partial cache: ignore it, decode again
        return None
    n = builder.info.splits[split].num_examples
    shape = tuple(builder.info.features["image"].shape)
    if fmt != _CACHE_FORMAT or images.shape != (n, *shape) or labels.shape != (n,):
        return None
    return images, labels


def read_prepared(builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All examples of a prepared split as (uint8 NHWC images, int32 labels)."""
    cached = _read_cache(builder, split)
    if cached is not None:
        return cached
    try:
        source = builder.as_data_source(split=split)
    except NotImplementedError as e:  # e.g. prepared by tfds in tfrecord format
        raise DataError(f"{builder.data_dir} holds {builder.name} in a format that cannot be "
                        f"read without TensorFlow ({e}); delete it so that it is prepared "
                        f"again as array_record") from e
    n = len(source)
    shape = tuple(builder.info.features["image"].shape)
    images = np.empty((n, *shape), np.uint8)
    labels = np.empty((n,), np.int32)
    chunk = 2048
    for start in range(0, n, chunk):
        for i, ex in enumerate(source.__getitems__(list(range(start, min(start + chunk, n)))),
                               start):
            images[i] = ex["image"]
            labels[i] = ex["label"]
    write_npz_atomic(_cache_path(builder, split), images=images, labels=labels,
                     format=np.int64(_CACHE_FORMAT))
    return images, labels


def _unreachable(name: str, timeout: float = 5.0) -> str | None:
    """Why the download hosts cannot be reached, or None if they can (or a proxy is set).

    Without this, tfds retries a failing download with back-off for minutes
    (measured: 204 s for MNIST with no DNS) before giving up.
    """
    import socket
    import threading
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                       "http_proxy", "ALL_PROXY", "all_proxy")):
        return None  # only requests knows how to go through the proxy: let tfds try
    hosts = sorted({(u.hostname, u.port or (443 if u.scheme == "https" else 80))
                    for u in (urlsplit(f.url) for f in official_files(name))})
    for host, port in hosts:
        result: list[str | None] = []

        def probe(host=host, port=port, result=result):
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                result.append(None)
            except OSError as e:
                result.append(f"{type(e).__name__}: {e}")

        t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout
        t.start()
        t.join(timeout + 1)
        reason = result[0] if result else "timed out"
        if reason is not None:
            return f"no network: cannot reach {host}:{port} ({reason})"
    return None


def _load_tfds_split(tname: str, split: str, *, data_dir, tfds_dir, download: bool,
                     use_os_package: bool, extra_checksums) -> tuple[np.ndarray, np.ndarray]:
    root = tfds_data_dir(tfds_dir)
    if data_dir is not None:
        files = find_official_files(tname, data_dir, extra_checksums=extra_checksums)
        return read_prepared(prepare(tname, root, local_files=files), split)

    builder = make_builder(tname, root)
    if is_prepared(builder):
        return read_prepared(builder, split)
    looked = [f"prepared tfds dataset: {builder.data_dir} (not there)"]

    if use_os_package and tname in OS_PACKAGES:
        files, where = find_os_package_files(tname)
        if files is not None:
            return read_prepared(prepare(tname, root, local_files=files), split)
        looked.append(where)

    if download and (offline := _unreachable(tname)):
        looked.append(f"tfds download: skipped, {offline}")
    elif download:
        try:
            return read_prepared(prepare(tname, root), split)
        except DataError:
            raise
        except Exception as e:  # no network, proxy, DNS...: report, do not crash
            first = (str(e).strip().splitlines() or [""])[0][:300]
            looked.append(f"tfds download into {root}: failed ({type(e).__name__}: {first})")
    else:
        looked.append("tfds download: not attempted (download=False)")
    raise DatasetNotFoundError(_not_found_message(tname, looked))


def load_split(name: str, split: str, *, data_dir: os.PathLike | str | None = None,
               tfds_dir: os.PathLike | str | None = None, download: bool = True,
               use_os_package: bool = True,
               extra_checksums: Mapping[str, tuple[int, str]] | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
    """Load one split as ``(images uint8 (N, H, W, C), labels int32 (N,))``.

    name: 'fashion_mnist', 'mnist', 'cifar10' or 'cifar2' (CIFAR-10 cats and dogs
    relabelled 0/1). split: 'train' or 'test'. See the module docstring for the
    lookup order. ``download=False`` and ``use_os_package=False`` switch off
    lookups (c) and (d), e.g. for hermetic tests. ``extra_checksums`` maps a file
    name to an additional accepted ``(size, sha256)``: an explicit opt-in for
    private or synthetic copies; the registered checksums are still accepted.
    """
    spec = get_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    try:
        images, labels = _load_tfds_split(
            spec.tfds_name, split, data_dir=data_dir, tfds_dir=tfds_dir, download=download,
            use_os_package=use_os_package, extra_checksums=extra_checksums)
    except DatasetNotFoundError as e:
        if name == spec.tfds_name:
            raise
        raise DatasetNotFoundError(
            f"{name!r} is made from {spec.tfds_name!r}, which is needed.\n{e}") from e
    if name == "cifar2":
        keep = np.isin(labels, CIFAR2_SOURCE_LABELS)
        images = images[keep]
        labels = np.searchsorted(np.asarray(CIFAR2_SOURCE_LABELS), labels[keep]).astype(np.int32)
    return images, labels
