"""tfds builders for MNIST, Fashion-MNIST and CIFAR-10 that prepare without TensorFlow.

Why: the built-in tfds builders read their downloads through ``tf.io.gfile`` and
encode PNGs with ``tf.image``, so preparing needs TensorFlow, which this project
cannot install. These subclasses keep the built-ins' ``name``, ``VERSION``,
features (``_info``), split names, example keys and ids, so the prepared
``array_record`` dataset is the one the built-in builder describes and any tfds
reader (``tfds.data_source('fashion_mnist', ...)``) reads it. Only the I/O
differs: gzip/tarfile/numpy to read, PIL to encode PNG.

Registration: each class passes ``skip_registration=True`` and sets ``name``
explicitly. tfds raises ``ValueError`` when a second class registers an already
registered name, and the built-ins stay the registered ones, so importing this
module leaves ``tfds.builder('mnist')`` untouched.

Where the files come from: ``local_files`` (a mapping key -> path, see
:meth:`official_files`) when the caller has already verified them
(:mod:`jaxconv.data.verify` checks them against tfds's registered sha256 and
size); otherwise the tfds download manager downloads the registered URLs and
verifies them itself. The download manager's ``extract`` is never used (it
needs TensorFlow for gzip).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from collections.abc import Iterable, Mapping
from urllib.parse import urljoin

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.image_classification import cifar as _tfds_cifar
from tensorflow_datasets.image_classification import mnist as _tfds_mnist

from .errors import DataError

FILE_FORMAT = 'array_record'  # random access without TensorFlow

# The installed tfds's own file names, so both stay in step.
_MNIST_FILENAMES = {
    'train_data': _tfds_mnist._MNIST_TRAIN_DATA_FILENAME,
    'train_labels': _tfds_mnist._MNIST_TRAIN_LABELS_FILENAME,
    'test_data': _tfds_mnist._MNIST_TEST_DATA_FILENAME,
    'test_labels': _tfds_mnist._MNIST_TEST_LABELS_FILENAME,
}
_IDX_DTYPES = {0x08: np.uint8}


def _registered_checksums_of(parent):
    """A ``_checksums_path`` class property that points at ``parent``'s file.

    tfds looks for checksums next to the builder's module; for a class defined
    in this package that file does not exist, and tfds would then download
    WITHOUT verifying. Pointing at the built-in's registered file
    (``tensorflow_datasets/url_checksums/<name>.txt``) keeps the check.
    """
    path = parent._checksums_path

    def _checksums_path(cls):
        return path

    return tfds.core.utils.classproperty(classmethod(_checksums_path))


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an (H, W) or (H, W, C) uint8 image (PIL, no TensorFlow).

    zlib level 1: twice as fast as PIL's default 6 for 4% larger files; PNG
    encoding is most of the preparation time. The bytes differ from
    ``tf.image.encode_png``'s, the decoded pixels do not.
    """
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format='PNG', compress_level=1)
    return buf.getvalue()


def read_idx(path: os.PathLike | str) -> np.ndarray:
    """Decode a gzipped IDX file (the MNIST format) into a numpy array.

    Checks the magic number and that the payload length matches the header, so
    a wrong or truncated file fails here with its name rather than later.
    """
    with gzip.open(os.fspath(path), 'rb') as f:
        try:
            data = f.read()
        except (EOFError, OSError) as e:
            raise DataError(f'{path}: cannot decompress ({e})') from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f'{path}: not an IDX file (bad magic number)')
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim))
    dtype = _IDX_DTYPES[data[2]]
    expected = header + int(np.prod(dims)) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise DataError(
            f'{path}: IDX header says {dims}, which needs {expected} bytes, '
            f'but the file holds {len(data)}'
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


class _LocalFilesMixin:
    """Lets the caller hand in already verified local files instead of URLs."""

    def __init__(self, *, local_files: Mapping[str, os.PathLike | str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._local_files = dict(local_files) if local_files else None

    @classmethod
    def official_files(cls) -> dict[str, tuple[str, str]]:
        """key -> (file name, URL) of the official files this builder reads."""
        raise NotImplementedError

    def _fetch(self, dl_manager) -> dict[str, str]:
        """Paths of the official files: the local ones, or a verified tfds download."""
        files = self.official_files()
        if self._local_files is not None:
            missing = sorted(set(files) - set(self._local_files))
            if missing:
                raise DataError(f'{self.name}: local_files lacks {missing}')
            return {k: os.fspath(self._local_files[k]) for k in files}
        paths = dl_manager.download({k: url for k, (_, url) in files.items()})
        return {k: os.fspath(p) for k, p in paths.items()}


class _MnistLike(_LocalFilesMixin):
    """Shared TF-free generation for the MNIST family (same file layout)."""

    @classmethod
    def official_files(cls):
        return {k: (fn, urljoin(cls.URL, fn)) for k, fn in _MNIST_FILENAMES.items()}

    def _split_generators(self, dl_manager):
        f = self._fetch(dl_manager)
        return [
            tfds.core.SplitGenerator(
                name=tfds.Split.TRAIN,
                gen_kwargs=dict(
                    num_examples=_tfds_mnist._TRAIN_EXAMPLES,
                    data_path=f['train_data'],
                    label_path=f['train_labels'],
                ),
            ),
            tfds.core.SplitGenerator(
                name=tfds.Split.TEST,
                gen_kwargs=dict(
                    num_examples=_tfds_mnist._TEST_EXAMPLES,
                    data_path=f['test_data'],
                    label_path=f['test_labels'],
                ),
            ),
        ]

    def _generate_examples(self, num_examples, data_path, label_path):
        """Same keys (the index) and records as the built-in, so tfds shuffles alike."""
        images = read_idx(data_path)
        labels = read_idx(label_path)
        size = _tfds_mnist._MNIST_IMAGE_SIZE
        if images.shape != (num_examples, size, size):
            raise DataError(
                f'{data_path}: images have shape {images.shape}, '
                f'expected {(num_examples, size, size)}'
            )
        if labels.shape != (num_examples,):
            raise DataError(
                f'{label_path}: labels have shape {labels.shape}, expected {(num_examples,)}'
            )
        num_classes = self.info.features['label'].num_classes
        if labels.max(initial=0) >= num_classes:
            raise DataError(f'{label_path}: label {labels.max()} >= {num_classes} classes')
        for index in range(num_examples):
            yield index, {'image': encode_png(images[index]), 'label': int(labels[index])}


class MNIST(_MnistLike, _tfds_mnist.MNIST, skip_registration=True):
    """tfds ``mnist`` 3.0.1, prepared without TensorFlow."""

    name = 'mnist'
    _checksums_path = _registered_checksums_of(_tfds_mnist.MNIST)


class FashionMNIST(_MnistLike, _tfds_mnist.FashionMNIST, skip_registration=True):
    """tfds ``fashion_mnist`` 3.0.1, prepared without TensorFlow."""

    name = 'fashion_mnist'
    _checksums_path = _registered_checksums_of(_tfds_mnist.FashionMNIST)


def read_tar_members(path: os.PathLike | str, names: Iterable[str]) -> dict[str, bytes]:
    """The named members of a (gzipped) tar archive, in one pass over it."""
    wanted = set(names)
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(os.fspath(path), 'r:*') as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    out[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f'{path}: cannot read the archive ({e})') from e
    missing = sorted(wanted - set(out))
    if missing:
        raise DataError(f'{path}: the archive lacks {", ".join(missing)}')
    return out


_CIFAR_RECORD = 1 + 32 * 32 * 3  # label byte + R, G, B planes

#: The python version of CIFAR-10 (what torchvision downloads): the same images in the same
#: order as the binary archive, as pickled dicts {'data': uint8 (10000, 3072) R, G, B planes,
#: 'labels': [int]} in cifar-10-batches-py/, class names in batches.meta's 'label_names'.
CIFAR10_PYTHON_FILENAME = 'cifar-10-python.tar.gz'
_CIFAR_PY_PREFIX = 'cifar-10-batches-py/'
_CIFAR_PY_TRAIN = tuple(f'data_batch_{i}' for i in range(1, 6))
_CIFAR_PY_TEST = ('test_batch',)

# What the official pickles (Python 2 cPickle of numpy arrays) and numpy 1/2 re-pickles need
# (Python 3 writes bytes at protocol 2 as _codecs.encode(str, 'latin1')); any other global in
# the stream is refused, so unpickling cannot run arbitrary code.
_PICKLE_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', 'scalar'),
    ('_codecs', 'encode'),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to load {module}.{name}')


def _unpickle(blob: bytes, where: str) -> dict:
    try:  # latin1: the official batches are Python 2 pickles (as torchvision reads them)
        obj = _ArraysOnlyUnpickler(io.BytesIO(blob), encoding='latin1').load()
    except Exception as e:  # noqa: BLE001 - any malformed stream is a data error naming it
        raise DataError(f'{where}: not a CIFAR python batch ({type(e).__name__}: {e})') from e
    if not isinstance(obj, dict):
        raise DataError(f'{where}: not a CIFAR python batch (a {type(obj).__name__}, not a dict)')
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar10_python(
    path: os.PathLike | str,
) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Parse ``cifar-10-python.tar.gz``: (class names, {split: (uint8 NHWC, int64 labels)}).

    Checks every batch's shapes, that labels and images agree in number, and the label range,
    naming the member at fault.
    """
    members = {n: _CIFAR_PY_PREFIX + n for n in (*_CIFAR_PY_TRAIN, *_CIFAR_PY_TEST, 'batches.meta')}
    blobs = read_tar_members(path, members.values())
    meta = _unpickle(blobs[members['batches.meta']], f'{path}:{members["batches.meta"]}')
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get('label_names', [])]
    if len(names) != 10:
        raise DataError(f'{path}: batches.meta lists {len(names)} class names, expected 10')
    splits = {}
    for split, batch_names in (('train', _CIFAR_PY_TRAIN), ('test', _CIFAR_PY_TEST)):
        images, labels = [], []
        for n in batch_names:
            where = f'{path}:{members[n]}'
            batch = _unpickle(blobs[members[n]], where)
            data = np.asarray(batch.get('data'))
            y = np.asarray(batch.get('labels'), np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise DataError(
                    f"{where}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)"
                )
            if y.shape != (len(data),):
                raise DataError(f'{where}: {len(y)} labels for {len(data)} images')
            if len(y) and not 0 <= y.min() <= y.max() < 10:
                raise DataError(
                    f'{where}: label {y.max() if y.max() >= 10 else y.min()} outside 0..9'
                )
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(y)
        splits[split] = (np.concatenate(images), np.concatenate(labels))
    return names, splits


class Cifar10(_LocalFilesMixin, _tfds_cifar.Cifar10, skip_registration=True):
    """tfds ``cifar10`` 3.0.2 (binary archive), prepared without TensorFlow."""

    name = 'cifar10'
    _checksums_path = _registered_checksums_of(_tfds_cifar.Cifar10)

    @classmethod
    def official_files(cls):
        url = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz'
        return {'archive': (url.rsplit('/', 1)[-1], url)}

    def _split_generators(self, dl_manager):
        info = self._cifar_info
        if info.url != self.official_files()['archive'][1]:  # tfds changed its source
            raise DataError(f"tfds's cifar10 now reads {info.url}; update jaxconv.data.builders")
        archive = self._fetch(dl_manager)['archive']
        if os.path.basename(archive) == CIFAR10_PYTHON_FILENAME:
            return self._python_split_generators(archive)
        member = lambda n: info.prefix + n  # noqa: E731
        blobs = read_tar_members(
            archive, [member(n) for n in info.train_files + info.test_files + info.label_files]
        )
        for key, label_file in zip(info.label_keys, info.label_files):
            label_names = [s for s in blobs[member(label_file)].decode().split('\n') if s]
            if len(label_names) != self.info.features[key].num_classes:
                raise DataError(
                    f'{archive}: {label_file} lists {len(label_names)} class names, '
                    f'expected {self.info.features[key].num_classes}'
                )
            self.info.features[key].names = label_names
        return {
            tfds.Split.TRAIN: self._generate_examples(
                'train_', [(n, blobs[member(n)]) for n in info.train_files]
            ),
            tfds.Split.TEST: self._generate_examples(
                'test_', [(n, blobs[member(n)]) for n in info.test_files]
            ),
        }

    def _python_split_generators(self, archive):
        """The same examples (ids, order, labels, pixels) from the python archive."""
        names, splits = read_cifar10_python(archive)
        self.info.features['label'].names = names
        return {
            tfds.Split.TRAIN: self._generate_arrays('train_', *splits['train']),
            tfds.Split.TEST: self._generate_arrays('test_', *splits['test']),
        }

    def _generate_arrays(self, split_prefix, images, labels):
        for index, (image, label) in enumerate(zip(images, labels)):
            yield (
                index,
                {
                    'id': f'{split_prefix}{index:05d}',
                    'image': encode_png(image),
                    'label': int(label),
                },
            )

    def _generate_examples(self, split_prefix, named_blobs):
        """Same keys and ids (``train_00000``...) as the built-in."""
        num_classes = self.info.features['label'].num_classes
        index = 0
        for fname, data in named_blobs:
            if len(data) % _CIFAR_RECORD:
                raise DataError(
                    f'{fname}: {len(data)} bytes is not a whole number of '
                    f'{_CIFAR_RECORD}-byte records'
                )
            records = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD)
            labels = records[:, 0]
            if labels.max(initial=0) >= num_classes:
                raise DataError(f'{fname}: label {labels.max()} >= {num_classes} classes')
            images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            for label, image in zip(labels, images):
                yield (
                    index,
                    {
                        'id': f'{split_prefix}{index:05d}',
                        'image': encode_png(image),
                        'label': int(label),
                    },
                )
                index += 1


BUILDERS: dict[str, type] = {
    'mnist': MNIST,
    'fashion_mnist': FashionMNIST,
    'cifar10': Cifar10,
}
