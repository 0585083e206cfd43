"""Tests for jaxconv.data: real Fashion-MNIST/MNIST, synthetic CIFAR-10 archives,
checksum and missing-data errors, atomic preparation, batching and preprocessing.

Each real dataset is prepared once per session (module-scoped fixtures, into a
pytest temporary tfds dir). Every load_split call that must stay on the machine
passes download=False and use_os_package=False, so a networked machine or one
with the Debian package installed gives the same results.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import DATASETS_DIR, MNIST_FILES, REPO, dataset_dir
from jaxconv.data import (
    DATASETS,
    ChecksumError,
    DataError,
    DatasetNotFoundError,
    epoch_batches,
    eval_batches,
    find_os_package_files,
    load_split,
    official_files,
    pad_batch,
    preprocess,
    steps_per_epoch,
    verify_file,
)

HERMETIC = dict(download=False, use_os_package=False)


def _load_both(name, data_dir, root):
    return {
        s: load_split(name, s, data_dir=data_dir, tfds_dir=root, **HERMETIC)
        for s in ('train', 'test')
    }


@pytest.fixture(scope='module')
def fmnist(tmp_path_factory):
    root = tmp_path_factory.mktemp('tfds_fmnist')
    return root, _load_both('fashion_mnist', dataset_dir('fashion-mnist'), root)


@pytest.fixture(scope='module')
def mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp('tfds_mnist')
    return root, _load_both('mnist', dataset_dir('mnist'), root)


# ---------------------------------------------------------------- synthetic CIFAR

CIFAR_NAMES = [
    'airplane',
    'automobile',
    'bird',
    'cat',
    'deer',
    'dog',
    'frog',
    'horse',
    'ship',
    'truck',
]


def make_cifar_archive(
    directory: Path, *, per_file=6, n_test=10, seed=0, bad_test_label=False
) -> tuple[Path, dict]:
    """A tiny cifar-10-binary.tar.gz in the official layout; returns (path, records).

    records[split] = (images (N, 32, 32, 3) uint8, labels (N,)) in file order.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    members, records = {}, {'train': ([], []), 'test': ([], [])}
    files = [(f'data_batch_{i}.bin', 'train', per_file) for i in range(1, 6)]
    files.append(('test_batch.bin', 'test', n_test))
    k = 0
    for fname, split, n in files:
        labels = (np.arange(k, k + n) % 10).astype(np.uint8)
        k += n
        if bad_test_label and split == 'test':
            labels[n // 2] = 42
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # R, G, B planes
        members[fname] = np.concatenate([labels[:, None], planes], axis=1).tobytes()
        records[split][0].append(images)
        records[split][1].append(labels)
    members['batches.meta.txt'] = ('\n'.join(CIFAR_NAMES) + '\n\n').encode()
    path = directory / 'cifar-10-binary.tar.gz'
    with tarfile.open(path, 'w:gz') as tar:
        for fname, data in members.items():
            info = tarfile.TarInfo(f'cifar-10-batches-bin/{fname}')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    records = {
        s: (np.concatenate(xs), np.concatenate(ys).astype(np.int32))
        for s, (xs, ys) in records.items()
    }
    return path, records


def register(path: Path) -> dict:
    """extra_checksums entry for a synthetic archive (explicit opt-in, test only)."""
    return {path.name: (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())}


def as_multiset(images, labels):
    """Order-free fingerprint: tfds shuffles examples by key hash when preparing."""
    return sorted(zip((im.tobytes() for im in images), labels.tolist()))


@pytest.fixture(scope='module')
def cifar(tmp_path_factory):
    src = tmp_path_factory.mktemp('cifar_src')
    archive, records = make_cifar_archive(src)
    root = tmp_path_factory.mktemp('tfds_cifar')
    loaded = {
        s: load_split(
            'cifar10', s, data_dir=src, tfds_dir=root, extra_checksums=register(archive), **HERMETIC
        )
        for s in ('train', 'test')
    }
    return root, src, records, loaded


# ------------------------------------------------------------------- real data


def test_fashion_mnist_real(fmnist):
    root, d = fmnist
    (xtr, ytr), (xte, yte) = d['train'], d['test']
    assert xtr.shape == (60000, 28, 28, 1) and xte.shape == (10000, 28, 28, 1)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int32
    assert np.bincount(ytr).tolist() == [6000] * 10
    assert np.bincount(yte).tolist() == [1000] * 10
    assert xtr.max() == 255 and xtr.min() == 0
    # close to the normalisation constants used for training
    sample = xtr[::10].astype(np.float32) / 255
    assert abs(sample.mean() - DATASETS['fashion_mnist'].mean[0]) < 3e-3
    assert abs(sample.std() - DATASETS['fashion_mnist'].std[0]) < 3e-3
    assert (root / 'fashion_mnist' / '3.0.1' / 'dataset_info.json').is_file()


def test_mnist_real(mnist):
    _, d = mnist
    (xtr, ytr), (xte, yte) = d['train'], d['test']
    assert xtr.shape == (60000, 28, 28, 1) and xte.shape == (10000, 28, 28, 1)
    assert np.bincount(ytr).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert len(yte) == 10000 and yte.dtype == np.int32


def test_second_load_reads_prepared_dataset(fmnist, mnist):
    """No data_dir: the prepared dataset (via the array cache) is read, fast."""
    root, d = fmnist
    t = time.perf_counter()
    x, y = load_split('fashion_mnist', 'train', tfds_dir=root, **HERMETIC)
    assert time.perf_counter() - t < 3.0  # 60k images from the cache
    np.testing.assert_array_equal(x, d['train'][0])
    np.testing.assert_array_equal(y, d['train'][1])
    # Without the cache, decoding the tfds records gives the very same arrays.
    root, d = mnist
    cache = root / 'mnist' / '3.0.1' / 'jaxconv_cache' / 'test.npz'
    assert cache.is_file()
    cache.unlink()
    x, y = load_split('mnist', 'test', tfds_dir=root, **HERMETIC)
    np.testing.assert_array_equal(x, d['test'][0])
    np.testing.assert_array_equal(y, d['test'][1])
    assert cache.is_file()


def test_tfds_dir_from_environment(mnist, monkeypatch):
    root, d = mnist
    monkeypatch.setenv('TFDS_DATA_DIR', str(root))
    _, y = load_split('mnist', 'test', **HERMETIC)
    np.testing.assert_array_equal(y, d['test'][1])


def test_prepared_dataset_is_the_builtin_tfds_dataset(fmnist):
    """Same name/version/features: tfds's own registered builder reads it."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import mnist as tfds_mnist

    root, d = fmnist
    assert tfds.builder_cls('fashion_mnist') is tfds_mnist.FashionMNIST  # registry intact
    src = tfds.data_source('fashion_mnist', split='test', data_dir=root)
    assert len(src) == 10000
    for i in (0, 9999):
        np.testing.assert_array_equal(src[i]['image'], d['test'][0][i])
        assert src[i]['label'] == d['test'][1][i]
    names = tfds.builder('fashion_mnist', data_dir=root).info.features['label'].names
    assert names == list(DATASETS['fashion_mnist'].class_names)


# ------------------------------------------------------------------ CIFAR (synthetic)


def test_cifar10_synthetic_archive(cifar):
    root, _, records, loaded = cifar
    for split in ('train', 'test'):
        x, y = loaded[split]
        assert x.shape == (len(records[split][1]), 32, 32, 3) and x.dtype == np.uint8
        assert y.dtype == np.int32
        assert as_multiset(x, y) == as_multiset(*records[split])
    x, y = load_split('cifar10', 'test', tfds_dir=root, **HERMETIC)  # prepared, no data_dir
    assert as_multiset(x, y) == as_multiset(*records['test'])


def test_cifar2_is_cats_and_dogs_relabelled(cifar):
    root, _, records, _ = cifar
    for split in ('train', 'test'):
        x, y = load_split('cifar2', split, tfds_dir=root, **HERMETIC)
        rx, ry = records[split]
        keep = (ry == 3) | (ry == 5)
        assert set(y.tolist()) == {0, 1}
        assert as_multiset(x, y) == as_multiset(rx[keep], (ry[keep] == 5).astype(np.int32))
    assert DATASETS['cifar2'].num_classes == 2


def test_cifar_synthetic_archive_rejected_without_explicit_checksum(cifar, tmp_path):
    _, src, _, _ = cifar
    with pytest.raises(ChecksumError, match='cifar-10-binary.tar.gz'):
        load_split('cifar10', 'test', data_dir=src, tfds_dir=tmp_path, **HERMETIC)
    assert not (tmp_path / 'cifar10').exists()


# ------------------------------------------------------- CIFAR python archive (synthetic)


def make_cifar_python_archive(directory: Path, records: dict, *, batch=None) -> Path:
    """cifar-10-python.tar.gz in the official layout (pickled dicts, protocol 2 as the
    original Python 2 pickles) holding ``records`` (the binary archive's examples, in order).
    ``batch`` replaces data_batch_1's pickle bytes (malformed-file cases)."""
    directory.mkdir(parents=True, exist_ok=True)
    (train_x, train_y), (test_x, test_y) = records['train'], records['test']
    chunks = np.array_split(np.arange(len(train_x)), 5)
    members = {}
    for i, idx in enumerate(chunks, 1):
        members[f'data_batch_{i}'] = {
            'batch_label': f'training batch {i} of 5',
            'labels': train_y[idx].tolist(),
            'data': train_x[idx].transpose(0, 3, 1, 2).reshape(-1, 3072),
            'filenames': [f'img{j}.png' for j in idx],
        }
    members['test_batch'] = {
        'batch_label': 'testing batch 1 of 1',
        'labels': test_y.tolist(),
        'data': test_x.transpose(0, 3, 1, 2).reshape(-1, 3072),
    }
    members['batches.meta'] = {
        'label_names': CIFAR_NAMES,
        'num_vis': 3072,
        'num_cases_per_batch': len(chunks[0]),
    }
    path = directory / 'cifar-10-python.tar.gz'
    with tarfile.open(path, 'w:gz') as tar:
        for name, obj in members.items():
            data = pickle.dumps(obj, protocol=2)
            if batch is not None and name == 'data_batch_1':
                data = batch
            info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope='module')
def cifar_python(cifar, tmp_path_factory):
    _, _, records, _ = cifar
    archive = make_cifar_python_archive(tmp_path_factory.mktemp('cifar_py_src'), records)
    return archive, records


def test_cifar_python_archive_parses_to_the_binary_archives_examples(cifar_python):
    from jaxconv.data.builders import read_cifar10_python

    archive, records = cifar_python
    names, splits = read_cifar10_python(archive)
    assert names == CIFAR_NAMES
    for split in ('train', 'test'):
        x, y = splits[split]
        np.testing.assert_array_equal(x, records[split][0])  # same order, HWC, R G B
        np.testing.assert_array_equal(y, records[split][1])


def test_cifar_python_archive_through_data_dir(cifar_python, tmp_path):
    archive, records = cifar_python
    for name in ('cifar10', 'cifar2'):
        x, y = load_split(
            name,
            'train',
            data_dir=archive.parent,
            tfds_dir=tmp_path,
            extra_checksums=register(archive),
            **HERMETIC,
        )
        rx, ry = records['train']
        if name == 'cifar2':
            keep = (ry == 3) | (ry == 5)
            rx, ry = rx[keep], (ry[keep] == 5).astype(np.int32)
        assert as_multiset(x, y) == as_multiset(rx, ry)


def test_cifar_python_archive_checksum_is_verified(cifar_python, tmp_path):
    """A generated archive is not the official one: without the caller's opt-in it is a
    checksum error naming the file and the official size and sha256, and nothing is prepared."""
    archive, _ = cifar_python
    with pytest.raises(ChecksumError, match='cifar-10-python.tar.gz') as info:
        load_split('cifar10', 'train', data_dir=archive.parent, tfds_dir=tmp_path, **HERMETIC)
    assert '170498071 bytes' in str(info.value)
    assert '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce' in str(info.value)
    assert not (tmp_path / 'cifar10').exists()


@pytest.mark.parametrize(
    'blob, needle',
    [
        (
            pickle.dumps({'data': np.zeros((2, 3072), np.uint8), 'labels': [0, 11]}, protocol=2),
            'label 11 outside 0..9',
        ),
        (
            pickle.dumps({'data': np.zeros((2, 100), np.uint8), 'labels': [0, 1]}, protocol=2),
            'expected uint8 (N, 3072)',
        ),
        (
            pickle.dumps({'data': np.zeros((2, 3072), np.uint8), 'labels': [0]}, protocol=2),
            '1 labels for 2 images',
        ),
        (b"cos\nsystem\n(S'echo owned'\ntR.", 'refusing to load os.system'),
    ],
)
def test_cifar_python_malformed_batch_names_the_member(cifar, tmp_path, blob, needle):
    from jaxconv.data.builders import read_cifar10_python

    _, _, records, _ = cifar
    archive = make_cifar_python_archive(tmp_path, records, batch=blob)
    with pytest.raises(DataError) as info:
        read_cifar10_python(archive)
    assert needle in str(info.value) and 'cifar-10-batches-py/data_batch_1' in str(info.value)


# ------------------------------------------------------------------ errors


def _copy_with(src: Path, dst: Path, name: str, mutate) -> Path:
    """Copy a real dataset dir (big files as symlinks) with one file mutated."""
    dst.mkdir()
    for f in MNIST_FILES:
        if f == name:
            (dst / f).write_bytes(mutate((src / f).read_bytes()))
        else:
            (dst / f).symlink_to(src / f)
    return dst


def _flip_one_byte(b: bytes) -> bytes:
    b = bytearray(b)
    b[len(b) // 2] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize('sub,name', [('fashion-mnist', 'fashion_mnist'), ('mnist', 'mnist')])
@pytest.mark.parametrize(
    'mutate', [lambda b: b[:-100], _flip_one_byte], ids=['truncated', 'one-byte-altered']
)
def test_checksum_error_names_the_file(sub, name, mutate, tmp_path):
    d = _copy_with(dataset_dir(sub), tmp_path / 'data', 'train-labels-idx1-ubyte.gz', mutate)
    with pytest.raises(ChecksumError, match='train-labels-idx1-ubyte.gz') as e:
        load_split(name, 'train', data_dir=d, tfds_dir=tmp_path / 'tfds', **HERMETIC)
    assert e.value.filename == 'train-labels-idx1-ubyte.gz'
    assert not (tmp_path / 'tfds' / name).exists()  # nothing prepared


def test_missing_files_list_expected_names(tmp_path):
    d = tmp_path / 'data'
    d.mkdir()
    (d / 'train-labels-idx1-ubyte.gz').write_bytes(b'')
    with pytest.raises(DatasetNotFoundError) as e:
        load_split('fashion_mnist', 'train', data_dir=d, tfds_dir=tmp_path / 't', **HERMETIC)
    msg = str(e.value)
    for f in MNIST_FILES:
        assert f in msg
    assert str(d) in msg and '--data-dir' in msg and 'apt-get install dataset-fashion-mnist' in msg


def test_empty_and_nonexistent_dirs(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='is empty'):
        load_split('mnist', 'test', data_dir=tmp_path / 'empty', tfds_dir=tmp_path, **HERMETIC)
    with pytest.raises(DataError, match='does not exist'):
        load_split('mnist', 'test', data_dir=tmp_path / 'nope', tfds_dir=tmp_path, **HERMETIC)


def test_mislabelled_directory(tmp_path):
    """MNIST's files given for Fashion-MNIST (same names): says which dataset they are."""
    with pytest.raises(DataError, match="'mnist'") as e:
        load_split(
            'fashion_mnist', 'test', data_dir=dataset_dir('mnist'), tfds_dir=tmp_path, **HERMETIC
        )
    assert not isinstance(e.value, ChecksumError)
    assert 'wrong dataset' in str(e.value)


def test_not_found_anywhere_lists_places_and_remedies(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_split('cifar2', 'train', tfds_dir=tmp_path, **HERMETIC)
    msg = str(e.value)
    assert 'cifar-10-binary.tar.gz' in msg and str(tmp_path / 'cifar10') in msg
    assert '--data-dir' in msg and 'network' in msg
    with pytest.raises(ValueError, match='unknown dataset'):
        load_split('imagenet', 'train')
    with pytest.raises(ValueError, match='unknown split'):
        load_split('mnist', 'validation')


def test_no_network_fails_fast_with_instructions(tmp_path, monkeypatch):
    """download=True without a network: no minutes of tfds retries, a clear message."""
    import socket

    for var in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy'):
        monkeypatch.delenv(var, raising=False)

    def offline(*a, **k):
        raise socket.gaierror(-2, 'Name or service not known')

    monkeypatch.setattr(socket, 'create_connection', offline)
    t = time.perf_counter()
    with pytest.raises(DatasetNotFoundError, match='no network') as e:
        load_split('mnist', 'test', tfds_dir=tmp_path, download=True, use_os_package=False)
    assert time.perf_counter() - t < 10
    assert 'storage.googleapis.com' in str(e.value)


def test_parent_data_dir_finds_dataset_subfolder():
    from jaxconv.data import find_official_files

    files = find_official_files(
        'mnist', DATASETS_DIR if DATASETS_DIR.is_dir() else dataset_dir('mnist')
    )
    assert {p.parent.name for p in files.values()} == {'mnist'}
    assert sorted(p.name for p in files.values()) == sorted(MNIST_FILES)


# ------------------------------------------------------------------ atomic preparation


def _prepared_trusted(root: Path) -> bool:
    try:
        load_split('cifar10', 'test', tfds_dir=root, **HERMETIC)
        return True
    except DatasetNotFoundError:
        return False


def test_failure_mid_prepare_leaves_nothing_trusted(tmp_path):
    """A bad record in the LAST split fails preparation after the train split was written."""
    archive, _ = make_cifar_archive(tmp_path / 'bad', bad_test_label=True)
    root = tmp_path / 'tfds'
    with pytest.raises(DataError, match='label 42'):
        load_split(
            'cifar10',
            'train',
            data_dir=archive.parent,
            tfds_dir=root,
            extra_checksums=register(archive),
            **HERMETIC,
        )
    assert not (root / 'cifar10' / '3.0.2').exists()
    assert not list((root / 'cifar10').glob('incomplete*'))  # tfds cleaned up
    assert not _prepared_trusted(root)


_CRASH = r"""
import os, sys
from jaxconv.data import builders, load_split
real = builders.Cifar10._generate_examples
def crashing(self, prefix, blobs):
    for i, ex in enumerate(real(self, prefix, blobs)):
        if prefix == "test_" and i == 3:
            os._exit(17)  # like SIGKILL: no finally blocks, no cleanup
        yield ex
builders.Cifar10._generate_examples = crashing
src, root, size, sha = sys.argv[1:]
load_split("cifar10", "train", data_dir=src, tfds_dir=root, download=False,
           use_os_package=False, extra_checksums={"cifar-10-binary.tar.gz": (int(size), sha)})
"""


def test_killed_prepare_leaves_nothing_trusted(tmp_path):
    archive, records = make_cifar_archive(tmp_path / 'src')
    root = tmp_path / 'tfds'
    ((size, sha),) = register(archive).values()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')])
    )
    res = subprocess.run(
        [sys.executable, '-c', _CRASH, str(archive.parent), str(root), str(size), sha],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert res.returncode == 17, res.stderr.decode()[-2000:]
    assert list((root / 'cifar10').glob('incomplete*'))  # the partial output is there...
    assert not (root / 'cifar10' / '3.0.2').exists()
    assert not _prepared_trusted(root)  # ...but nothing reads it
    # and a later run with the files prepares cleanly despite the leftovers
    x, y = load_split(
        'cifar10',
        'test',
        data_dir=archive.parent,
        tfds_dir=root,
        extra_checksums=register(archive),
        **HERMETIC,
    )
    assert as_multiset(x, y) == as_multiset(*records['test'])


# ------------------------------------------------------------------ OS package


def test_regzipped_fashion_mnist_accepted_by_content(tmp_path):
    """Debian's copies differ only in the gzip header: the content sha256 decides."""
    src = dataset_dir('fashion-mnist') / 't10k-labels-idx1-ubyte.gz'
    expected = {f.filename: f for f in official_files('fashion_mnist')}['t10k-labels-idx1-ubyte.gz']
    raw = gzip.decompress(src.read_bytes())
    regz = tmp_path / 't10k-labels-idx1-ubyte.gz'
    regz.write_bytes(gzip.compress(raw, mtime=1590000000))
    assert regz.read_bytes() != src.read_bytes()
    assert verify_file(regz, expected) == 'sha256 of decompressed content'
    regz.write_bytes(gzip.compress(_flip_one_byte(raw), mtime=0))
    with pytest.raises(ChecksumError, match='t10k-labels-idx1-ubyte.gz'):
        verify_file(regz, expected)
    # MNIST has no content checksums: a re-gzipped MNIST file is refused
    m = dataset_dir('mnist') / 't10k-labels-idx1-ubyte.gz'
    regz.write_bytes(gzip.compress(gzip.decompress(m.read_bytes()), mtime=0))
    mexp = {f.filename: f for f in official_files('mnist')}['t10k-labels-idx1-ubyte.gz']
    with pytest.raises(ChecksumError):
        verify_file(regz, mexp)


def test_os_package_files_found_and_verified():
    if shutil.which('dpkg-query') is None:
        pytest.skip('not a Debian-like system (no dpkg-query)')
    files, where = find_os_package_files('fashion_mnist')
    if files is None:
        pytest.skip(f'{where} (apt-get install dataset-fashion-mnist to run this test)')
    assert sorted(p.name for p in files.values()) == sorted(MNIST_FILES)
    assert find_os_package_files('mnist')[0] is None


# ------------------------------------------------------------------ batching


def _toy(n=103, hw=4):
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, hw, hw, 1), np.uint8)
    return images, np.arange(n, dtype=np.int64)


def test_steps_per_epoch():
    assert steps_per_epoch(103, 10) == 10
    assert steps_per_epoch(103, 10, drop_last=False) == 11
    assert steps_per_epoch(100, 10, drop_last=False) == 10


def test_epoch_batches_deterministic_and_resumable():
    x, y = _toy()

    def run(**kw):
        return [(bx.copy(), by.copy()) for bx, by in epoch_batches(x, y, 10, seed=7, **kw)]

    a, b = run(epoch=3), run(epoch=3)
    assert len(a) == 10
    for (ax, ay), (bx, by) in zip(a, b):
        np.testing.assert_array_equal(ax, bx)
        np.testing.assert_array_equal(ay, by)
        assert ax.shape == (10, 4, 4, 1) and ax.dtype == np.uint8 and ay.dtype == np.int32
        np.testing.assert_array_equal(ax[:, 0, 0, 0], ay)  # image and label stay paired
    assert not np.array_equal(a[0][1], run(epoch=4)[0][1])
    assert len(set(np.concatenate([by for _, by in a]).tolist())) == 100  # no repeats
    resumed = run(epoch=3, start_step=6)
    assert len(resumed) == 4
    for (_, ay), (_, ry) in zip(a[6:], resumed):
        np.testing.assert_array_equal(ay, ry)
    # a different seed gives a different order
    other = [by for _, by in epoch_batches(x, y, 10, seed=8, epoch=3)]
    assert not np.array_equal(other[0], a[0][1])


def test_process_slices_concatenate_to_global_batch():
    x, y = _toy()
    one = list(epoch_batches(x, y, 12, seed=1, epoch=0))
    two = [
        list(epoch_batches(x, y, 12, seed=1, epoch=0, process_index=p, process_count=2))
        for p in range(2)
    ]
    assert len(one) == len(two[0]) == len(two[1]) == 8
    for (gx, gy), (ax, ay), (bx, by) in zip(one, *two):
        assert ay.shape == (6,)
        np.testing.assert_array_equal(np.concatenate([ay, by]), gy)
        np.testing.assert_array_equal(np.concatenate([ax, bx]), gx)
    with pytest.raises(ValueError, match='does not divide'):
        epoch_batches(x, y, 10, seed=0, epoch=0, process_count=3)
    with pytest.raises(ValueError, match='start_step'):
        epoch_batches(x, y, 10, seed=0, epoch=0, start_step=11)


def test_eval_batches_cover_every_example_once():
    x, y = _toy(103)
    last = list(epoch_batches(x, y, 10, seed=0, epoch=0, shuffle=False, drop_last=False))
    assert len(last) == 11 and len(last[-1][1]) == 3
    np.testing.assert_array_equal(np.concatenate([b for _, b in last]), np.arange(103))
    for count in (1, 2, 5):
        seen = []
        for p in range(count):
            batches = list(eval_batches(x, y, 10, process_index=p, process_count=count))
            assert len(batches) == 11
            for bx, by, mask in batches:
                assert bx.shape == (10 // count, 4, 4, 1) and mask.dtype == bool
                seen.extend(by[mask].tolist())
        assert sorted(seen) == list(range(103))
    px, py, m = pad_batch(x[:3], y[:3].astype(np.int32), 8)
    assert px.shape == (8, 4, 4, 1) and m.tolist() == [True] * 3 + [False] * 5
    assert (px[3:] == 0).all() and py.dtype == np.int32


def test_epoch_batches_speed(fmnist):
    x, y = fmnist[1]['train']
    t = time.perf_counter()
    n = sum(1 for _ in epoch_batches(x, y, 128, seed=0, epoch=0))
    rate = n / (time.perf_counter() - t)
    assert n == 468
    assert rate > 500, f'{rate:.0f} batches/s'


# ------------------------------------------------------------------ preprocess


def test_preprocess_identity_size_and_normalisation():
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
    out = preprocess(x, image_size=28, mean=(0.2860,), std=(0.3530,))
    assert out.shape == (4, 28, 28, 1) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, (x / 255.0 - 0.2860) / 0.3530, rtol=1e-5, atol=1e-6)
    rgb = np.full((2, 32, 32, 3), 255, np.uint8)
    out = preprocess(rgb, image_size=32, mean=DATASETS['cifar10'].mean, std=DATASETS['cifar10'].std)
    expect = (1 - np.array(DATASETS['cifar10'].mean)) / np.array(DATASETS['cifar10'].std)
    np.testing.assert_allclose(out[0, 5, 7], expect, rtol=1e-6)
    assert (
        preprocess(rgb, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3, dtype=jnp.bfloat16).dtype
        == jnp.bfloat16
    )


def test_preprocess_pads_28_to_32_with_black():
    x = np.full((2, 28, 28, 1), 255, np.uint8)
    out = np.asarray(preprocess(x, image_size=32, mean=(0.1307,), std=(0.3081,)))
    assert out.shape == (2, 32, 32, 1)
    black, white = (0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081
    np.testing.assert_allclose(out[:, :2], black, rtol=1e-6)
    np.testing.assert_allclose(out[:, :, -2:], black, rtol=1e-6)
    np.testing.assert_allclose(out[:, 2:30, 2:30], white, rtol=1e-6)


def test_preprocess_resizes_28_to_96_and_jits():
    x = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    f = jax.jit(functools.partial(preprocess, image_size=96, mean=(0.5,), std=(0.25,)))
    out = f(x)
    assert out.shape == (3, 96, 96, 1)
    const = f(np.full((1, 28, 28, 1), 51, np.uint8))
    np.testing.assert_allclose(const, (0.2 - 0.5) / 0.25, atol=1e-5)  # bilinear keeps constants
    assert preprocess(x[0], image_size=96, mean=(0.5,), std=(0.25,)).shape == (96, 96, 1)


def test_preprocess_matches_torch_interpolate():
    """Same numbers as torchvision's tensor Resize (F.interpolate, antialias=True)."""
    torch = pytest.importorskip('torch')
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    for src, dst in ((28, 96), (32, 24)):
        x = rng.integers(0, 256, (2, src, src, 3), dtype=np.uint8)
        ours = np.asarray(preprocess(x, image_size=dst, mean=(0.0,) * 3, std=(1.0,) * 3))
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
        ref = (
            F.interpolate(t, size=(dst, dst), mode='bilinear', align_corners=False, antialias=True)
            .permute(0, 2, 3, 1)
            .numpy()
        )
        np.testing.assert_allclose(ours, ref, atol=2e-5, err_msg=f'{src}->{dst}')
