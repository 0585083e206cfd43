"""Default training recipe per architecture: what ``train.py --arch NAME`` runs when only the
architecture is given.

Why per architecture: the course trains every network with the same SGD settings on
Fashion-MNIST resized to 224 (96 for ResNet/DenseNet), which takes hours per epoch on a CPU and,
for the sigmoid LeNet, plateaus at 0.73 after 10 epochs. These recipes keep each network as
published but pick the smallest input it accepts (28 or 32), an optimizer it trains well with, and
few epochs, so that a default run finishes on a laptop-class CPU with good test accuracy.
The ``measured`` column of :func:`recipe_table` is read from the results file
(:mod:`jaxconv.training.measured`): the Fashion-MNIST test accuracy a default run of exactly
that recipe reached; recipes without one are not yet confirmed.
"""

from __future__ import annotations

import dataclasses

from jaxconv.training.measured import RECIPE_DATASET, load_results, measured_accuracy


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one default run. ``lr`` is the peak learning rate of ``schedule``."""

    image_size: int
    batch_size: int
    optimizer: str
    lr: float
    epochs: int
    weight_decay: float = 0.0
    schedule: str = 'cosine'
    #: Training augmentation on :data:`RECIPE_DATASET`, the dataset the recipes are tuned on;
    #: other datasets keep their own default (:func:`augment_for`).
    augment: str = 'none'
    #: Cross-entropy label smoothing (torch's ``CrossEntropyLoss(label_smoothing=...)``).
    label_smoothing: float = 0.0


# Adam with a cosine decay is the robust choice for the plain stacks (no BatchNorm; VGG and
# AlexNet need the small 1e-4 step); networks with BatchNorm take momentum SGD at a higher rate.
# The BatchNorm networks train with flips (crop-flip held ResNet-18 at 0.911 after 15 epochs).
# ResNet-18 at 32 with flips overfits short of 0.93 (15 epochs 0.9255, 30 epochs 0.926, train
# accuracy 0.993): its 7x7/2 stem and max-pool leave 8x8 maps at 32, so it takes 40 (10x10;
# the README gives the step time this costs) for 15 epochs, with label smoothing against the
# overfitting.
# NiN ends in ReLU'd class maps: at Adam 1e-3 they die in the first epoch (loss 2.306 after
# one epoch, test accuracy 0.10), so it takes 3e-4.
# The dropout MLP (100-wide layers at dropout 0.5) plateaus near 0.875 with Adam by 100 epochs
# and overfits by 300 (test loss rising); decoupled weight decay 0.1 over 300 epochs holds it.
# Sizes: the smallest sensible input of each stem (VGG's five 2x2 max-pools need 32; AlexNet's
# and NiN's 11x11/4 stems need 65 and 67).
RECIPES: dict[str, Recipe] = {
    'mlp': Recipe(28, 256, 'adam', 1e-3, 10),
    'mlp_dropout': Recipe(28, 256, 'adamw', 1e-3, 300, weight_decay=0.1),
    'lenet': Recipe(28, 64, 'adam', 1e-2, 10),
    'alexnet': Recipe(65, 128, 'adam', 1e-4, 8),
    'vgg11': Recipe(32, 64, 'adam', 2e-4, 9, augment='flip'),
    'vgg13': Recipe(32, 64, 'adam', 2e-4, 3),
    'vgg16': Recipe(32, 64, 'adam', 2e-4, 3),
    'vgg19': Recipe(32, 64, 'adam', 2e-4, 3),
    'nin': Recipe(67, 128, 'adam', 3e-4, 11, augment='flip'),
    'googlenet': Recipe(32, 128, 'adam', 1e-3, 6),
    'resnet18': Recipe(
        40, 128, 'momentum', 0.05, 15, weight_decay=5e-4, augment='flip', label_smoothing=0.1
    ),
    'resnet34': Recipe(32, 128, 'momentum', 0.05, 2, weight_decay=5e-4),
    'resnext': Recipe(32, 128, 'momentum', 0.05, 15, weight_decay=5e-4, augment='flip'),
    'densenet': Recipe(32, 128, 'momentum', 0.05, 15, weight_decay=5e-4, augment='flip'),
    'tv_alexnet': Recipe(64, 128, 'adam', 1e-4, 3),
    'tv_vgg11': Recipe(32, 64, 'adam', 2e-4, 3),
}

#: For registered architectures without an entry above (e.g. the torchvision variants).
FALLBACK = Recipe(32, 128, 'adam', 1e-3, 2)

#: Augmentation per dataset when ``--augment`` is not given. CIFAR: the standard random crop
#: after 4-pixel padding and horizontal flip, which every reference CIFAR recipe uses
#: (torchvision's, timm's, airbench's). Fashion-MNIST: the recipe's (clothes stay clothes when
#: mirrored). MNIST and the user's own folders: none (flipping digits or text changes the class).
DATASET_AUGMENT = {'cifar10': 'crop-flip', 'cifar2': 'crop-flip'}

#: Learning-rate schedules: 'constant', or 'cosine' (decay to 0 over the whole run).
SCHEDULES = ('constant', 'cosine')


def recipe_for(arch: str) -> Recipe:
    """The default recipe of ``arch`` (``FALLBACK`` for architectures without their own)."""
    return RECIPES.get(arch, FALLBACK)


def augment_for(dataset: str, recipe: Recipe) -> str:
    """The default ``--augment`` of ``dataset`` under ``recipe``: 'crop-flip' for CIFAR, the
    recipe's on Fashion-MNIST, else 'none'."""
    if dataset == RECIPE_DATASET:
        return recipe.augment
    return DATASET_AUGMENT.get(dataset, 'none')


def recipe_table(archs, results=None) -> str:
    """A plain-text table of the default recipes, for ``train.py --help``; the measured accuracy
    comes from ``results`` (default: the results file)."""
    results = load_results() if results is None else results
    rows = [
        (
            'arch',
            'size',
            'batch',
            'optimizer',
            'lr',
            'wd',
            'epochs',
            'schedule',
            'augment',
            'ls',
            'test acc (measured)',
        )
    ]
    for arch in archs:
        r = recipe_for(arch)
        acc = measured_accuracy(arch, r, results)
        rows.append(
            (
                arch,
                str(r.image_size),
                str(r.batch_size),
                r.optimizer,
                f'{r.lr:g}',
                f'{r.weight_decay:g}',
                str(r.epochs),
                r.schedule,
                r.augment,
                f'{r.label_smoothing:g}',
                '-' if acc is None else f'{acc:.3f}',
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return '\n'.join(
        '  ' + '  '.join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )
