"""Static facts about the supported datasets (no I/O, no tfds import).

The training loop needs the class count, input shape and normalisation
constants before (and independently of) loading any data, e.g. to build a model
or a checkpoint template, so they live here rather than in the tfds metadata.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a model and the input pipeline need to know about one dataset.

    ``mean``/``std`` are per channel on the [0, 1] scale, as used by
    ``torchvision.transforms.Normalize`` in the PyTorch reference, so the two
    frameworks see identical inputs.
    """

    name: str
    display_name: str
    tfds_name: str  # the tfds builder that holds the data (cifar2 -> cifar10)
    num_classes: int
    image_shape: tuple[int, int, int]  # (H, W, C)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    num_train: int
    num_test: int


_CIFAR10_CLASSES = (
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
)
_CIFAR_MEAN = (0.4915, 0.4823, 0.4468)  # the course's constants
_CIFAR_STD = (0.2470, 0.2435, 0.2616)

#: CIFAR-10 labels kept by CIFAR-2, in their new order (cat -> 0, dog -> 1).
CIFAR2_SOURCE_LABELS = (3, 5)

DATASETS: dict[str, DatasetSpec] = {
    'fashion_mnist': DatasetSpec(
        name='fashion_mnist',
        display_name='Fashion-MNIST',
        tfds_name='fashion_mnist',
        num_classes=10,
        image_shape=(28, 28, 1),
        mean=(0.2860,),
        std=(0.3530,),
        class_names=(
            'T-shirt/top',
            'Trouser',
            'Pullover',
            'Dress',
            'Coat',
            'Sandal',
            'Shirt',
            'Sneaker',
            'Bag',
            'Ankle boot',
        ),
        num_train=60000,
        num_test=10000,
    ),
    'mnist': DatasetSpec(
        name='mnist',
        display_name='MNIST',
        tfds_name='mnist',
        num_classes=10,
        image_shape=(28, 28, 1),
        mean=(0.1307,),
        std=(0.3081,),
        class_names=tuple(str(i) for i in range(10)),
        num_train=60000,
        num_test=10000,
    ),
    'cifar10': DatasetSpec(
        name='cifar10',
        display_name='CIFAR-10',
        tfds_name='cifar10',
        num_classes=10,
        image_shape=(32, 32, 3),
        mean=_CIFAR_MEAN,
        std=_CIFAR_STD,
        class_names=_CIFAR10_CLASSES,
        num_train=50000,
        num_test=10000,
    ),
    'cifar2': DatasetSpec(
        name='cifar2',
        display_name='CIFAR-2 (CIFAR-10 cats vs dogs)',
        tfds_name='cifar10',
        num_classes=2,
        image_shape=(32, 32, 3),
        mean=_CIFAR_MEAN,
        std=_CIFAR_STD,
        class_names=('cat', 'dog'),
        num_train=10000,
        num_test=2000,
    ),
}

SPLITS = ('train', 'test')

#: The user's own images (an ImageFolder tree given with ``--data-dir``). It has no entry in
#: ``DATASETS``: its spec (classes, channels, mean/std) is computed from the images
#: (:func:`jaxconv.data.folder.load_folder`).
FOLDER = 'folder'

#: Every name ``--dataset`` accepts.
DATASET_NAMES = (*sorted(DATASETS), FOLDER)


def get_spec(name: str) -> DatasetSpec:
    """``DATASETS[name]`` with an error that lists the valid names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f'unknown dataset {name!r}; choose one of {", ".join(sorted(DATASETS))}'
        ) from None
