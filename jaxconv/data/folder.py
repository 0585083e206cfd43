"""The user's own images in torchvision's ``ImageFolder`` layout, as numpy arrays and a spec.

    DIR/train/CLASS/*.png|jpg|jpeg|bmp|webp     (nested folders below CLASS are included)
    DIR/test/CLASS/...                          optional; else a ``val_fraction`` split of train

Why decode everything up front into one uint8 array: the rest of jaxconv (deterministic batching,
resume, sharding, preprocessing inside jit) works on whole splits in memory, exactly as for the
built-in datasets, so a folder dataset needs no second input pipeline. Images of mixed sizes and
modes are made uniform here, on the host: converted to 1 or 3 channels with PIL (``convert('L')``
/ ``convert('RGB')``, as torchvision's loader does for RGB) and resized to the run's image size
with PIL's antialiased bilinear filter (torchvision's ``Resize((S, S))`` on a PIL image; the aspect
ratio is not kept).

Classes are the sub-folder names of ``train/`` in Python's sorted order (torchvision's
``find_classes``); names starting with a dot (``.ipynb_checkpoints``, ``.DS_Store``) are skipped.
Files are listed as torchvision's ``make_dataset`` lists them: per class, ``os.walk`` in sorted
order, extensions compared case-insensitively.

The decoded arrays are cached under the tfds data dir (``jaxconv_folder_cache/``), keyed by the
folder's absolute path, the image size and the channels, and checked against every file's path,
size and mtime: adding, removing or changing one image decodes again. The cache is written only
after everything decoded, to a temporary name and renamed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .cache import write_npz_atomic
from .errors import DataError
from .info import DatasetSpec

#: File extensions read as images (torchvision's IMG_EXTENSIONS, less the rare ones).
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')

#: PIL modes that hold one channel of intensity; every other mode counts as colour.
_GREY_MODES = frozenset({'1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16B', 'I;16L', 'F'})

_CACHE_DIR = 'jaxconv_folder_cache'
_CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class FolderDataset:
    """A folder dataset, decoded: the spec the model and preprocessing use, and both splits.

    ``train_x``/``test_x``: uint8 (N, S, S, C); ``train_y``/``test_y``: int32 (N,).
    ``spec.mean``/``spec.std`` are per channel on the [0, 1] scale, over the training split.
    ``test_source`` is 'test/' or the validation split's description.
    """

    spec: DatasetSpec
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_source: str


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def find_classes(split_dir: Path) -> list[str]:
    """Sub-folder names of ``split_dir``, sorted as torchvision sorts them (plain ``sorted``)."""
    return sorted(
        e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith('.')
    )


def list_images(split_dir: Path, classes: list[str]) -> dict[str, list[Path]]:
    """Class name -> its image files, in torchvision's order; a class without one is an error."""
    files = {}
    for name in classes:
        found = []
        for root, _, names in sorted(os.walk(split_dir / name, followlinks=True)):
            if any(part.startswith('.') for part in Path(root).relative_to(split_dir).parts):
                continue  # .ipynb_checkpoints and the like, at any depth
            found += [
                Path(root) / f for f in sorted(names) if _is_image(f) and not f.startswith('.')
            ]
        if not found:
            raise DataError(
                f'the class folder {split_dir / name} holds no image (looked for '
                f'{", ".join(IMAGE_EXTENSIONS)}); add images or remove the folder'
            )
        files[name] = found
    return files


def scan(
    root: os.PathLike | str,
) -> tuple[list[str], dict[str, list[Path]], dict[str, list[Path]] | None]:
    """(classes, train files per class, test files per class or None) of an ImageFolder tree."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = 'does not exist' if not root.exists() else 'is not a directory'
        raise DataError(
            f'--data-dir {root} {what}; for --dataset folder pass a directory with '
            f'train/CLASS/*.png (or .jpg ...) and optionally test/CLASS/...'
        )
    train_dir = root / 'train'
    if not train_dir.is_dir():
        raise DataError(
            f'--data-dir {root} has no train/ folder; --dataset folder expects '
            f'{root}/train/CLASS/*.png (one sub-folder per class) and optionally '
            f'{root}/test/CLASS/...'
        )
    classes = find_classes(train_dir)
    if not classes:
        raise DataError(
            f"{train_dir} holds no class folder; put each class's images in {train_dir}/CLASS_NAME/"
        )
    train = list_images(train_dir, classes)
    test_dir = root / 'test'
    if not test_dir.is_dir():
        return classes, train, None
    test_classes = find_classes(test_dir)
    unknown = [c for c in test_classes if c not in train]
    if unknown:
        raise DataError(
            f'{test_dir} has class folder{"s" if len(unknown) > 1 else ""} '
            f'{", ".join(unknown)} that {train_dir} lacks; every test class must '
            f'also be a training class (train/ has: {", ".join(classes)})'
        )
    return classes, train, list_images(test_dir, test_classes)


def _unreadable() -> tuple[type[Exception], ...]:
    """What PIL raises for a file that is no image, a truncated or corrupt one, or a
    decompression bomb (UnidentifiedImageError is an OSError)."""
    from PIL import Image

    return (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _open(path: Path):
    """The PIL image at ``path``, fully decoded, or a DataError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image
    except _unreadable() as e:
        raise DataError(
            f'cannot read the image {path} ({type(e).__name__}: {e}); replace or delete it'
        ) from None


def majority_channels(paths: list[Path]) -> int:
    """1 if most images are greyscale, else 3 (a tie goes to colour). Reads headers only."""
    from PIL import Image

    grey = 0
    for path in paths:
        try:
            with Image.open(path) as image:
                grey += image.mode in _GREY_MODES
        except _unreadable() as e:
            raise DataError(
                f'cannot read the image {path} ({type(e).__name__}: {e}); replace or delete it'
            ) from None
    return 1 if grey * 2 > len(paths) else 3


def decode(paths: list[Path], *, image_size: int, channels: int) -> np.ndarray:
    """uint8 (N, S, S, C): each image converted to ``channels`` and resized to S x S."""
    from PIL import Image

    mode = {1: 'L', 3: 'RGB'}[channels]
    out = np.empty((len(paths), image_size, image_size, channels), np.uint8)
    for i, path in enumerate(paths):
        image = _open(path)
        if image.mode == 'P' and 'transparency' in image.info:
            image = image.convert('RGBA')  # PIL warns converting such palettes directly
        image = image.convert(mode)
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.BILINEAR)
        out[i] = np.asarray(image, np.uint8).reshape(image_size, image_size, channels)
    return out


def _fingerprint(paths: list[Path], root: Path, **settings) -> str:
    """sha256 over every file's relative path, size and mtime, and the decode settings."""
    h = hashlib.sha256(json.dumps({'format': _CACHE_FORMAT, **settings}).encode())
    for path in paths:
        st = path.stat()
        h.update(f'{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()


def _cache_file(cache_dir: Path, root: Path, image_size: int, channels: int) -> Path:
    key = hashlib.sha256(os.fspath(root.absolute()).encode()).hexdigest()[:16]
    return cache_dir / _CACHE_DIR / key / f'{image_size}x{image_size}x{channels}.npz'


def _read_cache(path: Path, fingerprint: str, n: int) -> np.ndarray | None:
    try:
        with np.load(path) as z:
            if str(z['fingerprint']) != fingerprint:
                return None
            images = z['images']
    except Exception:  # missing, partial or unreadable: decode again
        return None
    return images if len(images) == n else None


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of ``n`` examples: a pure function of the seed."""
    if not 0 < fraction < 1:
        raise DataError(f'--val-fraction must be in (0, 1), got {fraction}')
    k = min(max(int(round(n * fraction)), 1), n - 1)
    perm = np.random.default_rng([int(seed), 0x76616C]).permutation(n)  # 'val'
    return np.sort(perm[k:]), np.sort(perm[:k])


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 NHWC images on the [0, 1] scale."""
    x = images.reshape(-1, images.shape[-1])
    total = np.zeros(x.shape[1], np.float64)
    squares = np.zeros(x.shape[1], np.float64)
    for start in range(0, len(x), 1 << 22):  # float64 in chunks: no N x 8-byte copy at once
        chunk = x[start : start + (1 << 22)].astype(np.float64) / 255.0
        total += chunk.sum(0)
        squares += (chunk * chunk).sum(0)
    mean = total / len(x)
    std = np.sqrt(np.maximum(squares / len(x) - mean * mean, 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel: leave it unscaled, not divided by 0
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def load_folder(
    root: os.PathLike | str,
    *,
    image_size: int,
    channels: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: os.PathLike | str | None = None,
) -> FolderDataset:
    """Read an ImageFolder tree (see the module docstring) into a :class:`FolderDataset`.

    ``channels``: 1 or 3, None for what most images have. ``val_fraction``: the share of the
    training images held out as the test split when there is no ``test/`` folder.
    ``cache_dir``: where the decoded arrays are cached (None: no cache). Raises
    :class:`DataError` naming the image or folder at fault; nothing is written then.
    """
    root = Path(root).expanduser()
    classes, train_files, test_files = scan(root)
    train_paths = [p for c in classes for p in train_files[c]]
    train_labels = np.array([i for i, c in enumerate(classes) for _ in train_files[c]], np.int32)
    test_paths, test_labels = [], np.zeros(0, np.int32)
    if test_files is not None:
        index = {c: i for i, c in enumerate(classes)}
        test_paths = [p for c in test_files for p in test_files[c]]
        test_labels = np.array([index[c] for c in test_files for _ in test_files[c]], np.int32)
    paths = train_paths + test_paths
    if channels is None:
        channels = majority_channels(paths)
    if channels not in (1, 3):
        raise DataError(f'--channels must be 1 or 3, got {channels}')

    cached = None
    if cache_dir is not None:
        cache = _cache_file(Path(cache_dir), root, image_size, channels)
        fingerprint = _fingerprint(paths, root, image_size=image_size, channels=channels)
        cached = _read_cache(cache, fingerprint, len(paths))
    images = (
        cached if cached is not None else decode(paths, image_size=image_size, channels=channels)
    )
    if cache_dir is not None and cached is None:
        write_npz_atomic(cache, images=images, fingerprint=np.str_(fingerprint))

    train_x, test_x = images[: len(train_paths)], images[len(train_paths) :]
    train_y, test_y = train_labels, test_labels
    if test_files is None:
        keep, held = split_validation(len(train_x), val_fraction, seed)
        train_x, test_x = train_x[keep], train_x[held]
        train_y, test_y = train_y[keep], train_y[held]
        test_source = f'{len(held)} training images held out (--val-fraction {val_fraction})'
    else:
        test_source = str(root / 'test')
    mean, std = channel_stats(train_x)
    spec = DatasetSpec(
        name='folder',
        display_name=f'images in {root}',
        tfds_name='',
        num_classes=len(classes),
        image_shape=(image_size, image_size, channels),
        mean=mean,
        std=std,
        class_names=tuple(classes),
        num_train=len(train_x),
        num_test=len(test_x),
    )
    return FolderDataset(spec, train_x, train_y, test_x, test_y, test_source)
