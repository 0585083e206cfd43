"""Datasets for jaxconv: find, verify and prepare them with tfds (no TensorFlow),
load whole splits as numpy arrays, batch them deterministically and preprocess
inside jit.

    images, labels = load_split("fashion_mnist", "train", data_dir="...")
    for x, y in epoch_batches(images, labels, 128, seed=0, epoch=e, start_step=s):
        ...  # inside the jitted step: preprocess(x, image_size=32, mean=..., std=...)

    own = load_folder("my_images", image_size=32)  # ImageFolder tree -> arrays + own.spec

``builders`` (tfds) is imported lazily, on the first load.
"""

from .errors import ChecksumError, DataError, DatasetNotFoundError
from .folder import FolderDataset, load_folder
from .info import (
    CIFAR2_SOURCE_LABELS,
    DATASET_NAMES,
    DATASETS,
    FOLDER,
    SPLITS,
    DatasetSpec,
    get_spec,
)
from .locate import find_official_files, find_os_package_files
from .pipeline import (
    epoch_batches,
    epoch_permutation,
    eval_batches,
    pad_batch,
    preprocess,
    steps_per_epoch,
)
from .prepare import prepare, tfds_data_dir
from .sources import load_split
from .verify import official_files, verify_file

__all__ = [
    'ChecksumError',
    'DataError',
    'DatasetNotFoundError',
    'CIFAR2_SOURCE_LABELS',
    'DATASET_NAMES',
    'DATASETS',
    'FOLDER',
    'SPLITS',
    'DatasetSpec',
    'get_spec',
    'FolderDataset',
    'load_folder',
    'epoch_batches',
    'epoch_permutation',
    'eval_batches',
    'pad_batch',
    'preprocess',
    'steps_per_epoch',
    'find_official_files',
    'find_os_package_files',
    'load_split',
    'official_files',
    'prepare',
    'tfds_data_dir',
    'verify_file',
]
