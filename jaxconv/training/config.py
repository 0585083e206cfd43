"""The training configuration: one frozen dataclass, resolved against the recipe and checked.

``TrainConfig`` holds exactly what ``train.py`` accepts; fields left ``None`` take the value of the
architecture's recipe (:mod:`jaxconv.training.recipes`) in :func:`resolve`. Each field carries its
option's help, choices and range check (:func:`option`), so the default, the ``train.py`` option
(:mod:`jaxconv.training.cli` builds the parser from the fields) and the check are written once,
in one place. ``RUN_FIELDS`` are the fields that determine the trajectory of a run: a resumed run
must agree on all of them, or it would not continue the same run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from jaxconv.data import DATASET_NAMES, FOLDER
from jaxconv.data.augment import AUGMENTATIONS
from jaxconv.optim import OPTIMIZERS
from jaxconv.training.errors import ConfigError
from jaxconv.training.recipes import SCHEDULES, augment_for, recipe_for

#: Parameter and computation dtypes; float64 turns on ``jax_enable_x64`` for the process.
DTYPES = ('float32', 'float64')


@dataclasses.dataclass(frozen=True)
class Check:
    """A field's range check, written beside the field: ``ok(value)``, else a ``ConfigError`` of
    ``message`` formatted with the option's ``flag``, the field's ``name``, the ``value`` and its
    ``choices``. ``ok=None``: the value must be one of the field's choices."""

    message: str
    ok: Callable[[Any], bool] | None = None
    optional: bool = False  # None passes: the option was not given


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


_ONE_OF = Check('{flag} must be one of {choices}, got {value!r}')
_KNOWN = Check('unknown {name} {value!r}; choose one of: {choices}')
_POSITIVE_INT = Check(
    '{flag} must be a positive integer, got {value!r}', lambda v: _is_int(v) and v > 0
)
_OPTIONAL_POSITIVE_INT = dataclasses.replace(_POSITIVE_INT, optional=True)
_NON_NEGATIVE_INT = Check(
    '{flag} must be a non-negative integer, got {value!r}', lambda v: _is_int(v) and v >= 0
)


def _archs() -> tuple[str, ...]:
    from jaxconv.registry import list_models  # the registry imports the models: only when asked

    return tuple(list_models())


def option(
    help: str,
    default: Any = dataclasses.MISSING,
    *,
    check: Check | None = None,
    choices=None,
    metavar: str | None = None,
    recipe: str | None = None,
    flag: str | None = None,
):
    """A field that is a ``train.py`` option: its help, choices and range check beside it.

    ``recipe`` names the recipe table's column a ``None`` default is taken from; ``choices`` may
    be a function (the registered archs, known only once the models are imported); ``flag``
    replaces ``--field-name``. ``jaxconv.training.cli`` builds the parser from these."""
    return dataclasses.field(
        default=default,
        metadata={
            'help': help,
            'check': check,
            'choices': choices,
            'metavar': metavar,
            'recipe': recipe,
            'flag': flag,
        },
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. ``None`` means "the recipe's value"."""

    arch: str = option(
        'architecture, one of: {choices}', choices=_archs, check=_KNOWN, metavar='ARCH'
    )
    dataset: str = option(
        "dataset (default: %(default)s); 'folder': your own images in --data-dir",
        'fashion_mnist',
        choices=DATASET_NAMES,
        check=_KNOWN,
    )
    data_dir: str | None = option(
        'directory with the official dataset files (checked against their registered '
        'checksums); default: a prepared tfds dataset, the OS package, or a download. '
        'For --dataset folder: DIR/train/CLASS/*.png|jpg|jpeg|bmp|webp and optionally '
        'DIR/test/CLASS/...',
        None,
        metavar='DIR',
    )
    channels: int | None = option(
        '--dataset folder: convert the images to 1 (grey) or 3 (RGB) channels (default: '
        'what most images have)',
        None,
        choices=(1, 3),
        check=Check('{flag} must be 1 or 3, got {value!r}', optional=True),
    )
    val_fraction: float = option(
        '--dataset folder without test/: hold out this share of train/ as the test split, '
        'chosen by --seed (default: %(default)s)',
        0.1,
        metavar='F',
        check=Check(
            '{flag} must be in (0, 1), got {value!r}',
            lambda v: isinstance(v, (int, float)) and 0 < v < 1,
        ),
    )
    augment: str | None = option(
        "training augmentation: 'crop-flip' (random crop after 4-pixel zero padding, then "
        "horizontal flip), 'flip' or 'none' (default: crop-flip for cifar10/cifar2, the "
        "arch's recipe augment for fashion_mnist (table below), else none)",
        None,
        choices=AUGMENTATIONS,
        check=_ONE_OF,
    )
    tfds_dir: str | None = option(
        'where tfds prepares datasets (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)',
        None,
        metavar='DIR',
    )
    image_size: int | None = option(
        'input size N×N', None, metavar='N', recipe='size', check=_POSITIVE_INT
    )
    batch_size: int | None = option(
        'global batch size, divisible by the device count',
        None,
        metavar='N',
        recipe='batch',
        check=_POSITIVE_INT,
    )
    epochs: int | None = option('', None, metavar='N', recipe='epochs', check=_NON_NEGATIVE_INT)
    optimizer: str | None = option('', None, choices=OPTIMIZERS, recipe='optimizer', check=_KNOWN)
    lr: float | None = option(
        'peak learning rate',
        None,
        recipe='lr',
        check=Check(
            '{flag} must be a positive number, got {value!r}', lambda v: _is_number(v) and v > 0
        ),
    )
    weight_decay: float | None = option(
        '',
        None,
        metavar='WD',
        recipe='wd',
        check=Check('{flag} must be >= 0, got {value!r}', lambda v: math.isfinite(v) and v >= 0),
    )
    momentum: float = option(
        'momentum of the momentum/nesterov optimizers (default: %(default)s)',
        0.9,
        check=Check('{flag} must be in [0, 1), got {value!r}', lambda v: 0 <= v < 1),
    )
    schedule: str | None = option(
        'learning-rate schedule', None, choices=SCHEDULES, recipe='schedule', check=_KNOWN
    )
    label_smoothing: float | None = option(
        "training loss's label smoothing, as torch's CrossEntropyLoss(label_smoothing=); the "
        'test loss stays plain cross-entropy',
        None,
        metavar='EPS',
        recipe='ls',
        check=Check(
            '{flag} must be in [0, 1), got {value!r}', lambda v: _is_number(v) and 0 <= v < 1
        ),
    )
    seed: int = option(
        'parameter init, data order and dropout (default: %(default)s)', 0, check=_NON_NEGATIVE_INT
    )
    dtype: str = option(
        'parameters and computation (default: %(default)s); float64 is several '
        'times slower and serves exact comparisons, e.g. that N devices train '
        'like 1',
        'float32',
        choices=DTYPES,
        check=_ONE_OF,
    )
    workdir: str | None = option(
        'output directory (default: runs/ARCH-DATASET)', None, metavar='DIR'
    )
    resume: bool = option(
        'continue the run in --workdir from its latest checkpoint (same settings required)', False
    )
    overwrite: bool = option('delete the run already in --workdir and start again', False)
    limit_train: int | None = option(
        'train on the first N training examples', None, metavar='N', check=_OPTIONAL_POSITIVE_INT
    )
    limit_eval: int | None = option(
        'evaluate on the first N test examples', None, metavar='N', check=_OPTIONAL_POSITIVE_INT
    )
    devices: int | None = option(
        'use the first N devices (default: all)', None, metavar='N', check=_OPTIONAL_POSITIVE_INT
    )
    keep_checkpoints: int = option(
        'how many of the latest checkpoints to keep (default: %(default)s)',
        3,
        metavar='N',
        check=_POSITIVE_INT,
    )
    progress: bool = option('no progress bar', True, flag='--no-progress')
    coordinator_address: str | None = option(
        'multi-process run: address of process 0', None, metavar='HOST:PORT'
    )
    num_processes: int | None = option(
        'multi-process run: number of processes', None, metavar='N', check=_OPTIONAL_POSITIVE_INT
    )
    process_id: int | None = option('multi-process run: index of this process', None, metavar='I')
    distributed: bool = option(
        "multi-process run with JAX's cluster autodetection (SLURM, Open MPI, Kubernetes)", False
    )
    init_from: str | None = option(
        'start from these weights instead of the initialiser: a torch state_dict (.pth/.pt, '
        'loaded with weights_only=True), a .safetensors file (no torch needed) or a jaxconv '
        "run directory; tv_* archs take torchvision's own state_dict. A head of another "
        'class count is re-initialised, a first conv of another input width adapted',
        None,
        metavar='PATH',
    )
    init_step: int | None = option(
        '--init-from RUN_DIR: start from its checkpoint N (default: its latest)',
        None,
        metavar='N',
        check=_OPTIONAL_POSITIVE_INT,
    )
    init_sha256: str | None = None  # set by fit: the sha256 of what --init-from resolved to
    trainable: str = option(
        "what is trained (default: %(default)s); 'head': only the "
        'classifier, the rest in eval mode (BatchNorm keeps its running '
        'statistics)',
        'all',
        choices=('all', 'head'),
        check=Check('{flag} must be all or head, got {value!r}'),
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


#: Fields a resumed run must share with the run it continues. ``epochs`` joins them when the
#: learning-rate schedule depends on the run's length (every schedule but 'constant').
RUN_FIELDS = (
    'arch',
    'dataset',
    'image_size',
    'batch_size',
    'optimizer',
    'lr',
    'weight_decay',
    'momentum',
    'schedule',
    'label_smoothing',
    'seed',
    'dtype',
    'limit_train',
    'limit_eval',
    'augment',
    'channels',
    'val_fraction',
)

#: What a run saved before a field existed ran with, where that differs from the field's default
#: (``augment`` defaults to None, "the dataset's default", but every earlier run had none;
#: likewise no label smoothing).
LEGACY_VALUES = {'augment': 'none', 'label_smoothing': 0.0}


#: A resumed run must also train the same parameters and start from the same weights (their
#: sha256: the file may have moved, but not changed).
RUN_FIELDS += ('trainable', 'init_sha256')


def run_fields(config: TrainConfig) -> dict[str, Any]:
    """The trajectory-defining part of a resolved config (what resuming must match)."""
    names = RUN_FIELDS + (() if config.schedule == 'constant' else ('epochs',))
    return {name: getattr(config, name) for name in names}


def choices_of(f: dataclasses.Field) -> tuple | None:
    """The field's choices (called, for the archs), or None."""
    choices = f.metadata.get('choices')
    return tuple(choices()) if callable(choices) else choices


def flag_of(f: dataclasses.Field) -> str:
    """The field's ``train.py`` option: ``--field-name`` unless the field names another."""
    return f.metadata.get('flag') or '--' + f.name.replace('_', '-')


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _check(config: TrainConfig, name: str) -> None:
    f = _FIELDS[name]
    check, value = f.metadata.get('check'), getattr(config, name)
    if check is None or (value is None and check.optional):
        return
    choices = choices_of(f)
    if not (value in choices if check.ok is None else check.ok(value)):
        raise ConfigError(
            check.message.format(
                flag=flag_of(f), name=name, value=value, choices=', '.join(map(str, choices or ()))
            )
        )


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every ``None`` hyper-parameter from the recipe and check the values.

    Raises ``ConfigError`` naming the bad value and what is allowed; architecture-dependent
    checks (minimum image size) and device checks come later, once a model and devices exist.
    """
    _check(config, 'arch')  # the recipe and the dataset's augmentation need these two
    _check(config, 'dataset')
    if config.dataset == FOLDER and config.data_dir is None:
        raise ConfigError(
            '--dataset folder needs --data-dir DIR, DIR holding train/CLASS/*.png '
            '(or .jpg ...) and optionally test/CLASS/...'
        )
    recipe = recipe_for(config.arch)
    filled = {
        f.name: getattr(recipe, f.name)
        for f in dataclasses.fields(recipe)
        if f.name in _FIELDS and f.name != 'augment' and getattr(config, f.name) is None
    }
    if config.workdir is None:
        filled['workdir'] = f'runs/{config.arch}-{config.dataset}'
    if config.augment is None:
        filled['augment'] = augment_for(config.dataset, recipe)
    config = config.replace(**filled)

    for name in _FIELDS:
        _check(config, name)
    if config.init_step is not None and config.init_from is None:
        raise ConfigError('--init-step needs --init-from RUN_DIR')
    if config.resume and config.overwrite:
        raise ConfigError('--resume and --overwrite exclude each other')
    explicit = (config.coordinator_address, config.num_processes, config.process_id)
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        raise ConfigError('--coordinator-address, --num-processes and --process-id go together')
    if config.process_id is not None and not 0 <= config.process_id < config.num_processes:
        raise ConfigError(
            f'--process-id must be in [0, {config.num_processes}), got {config.process_id}'
        )
    return config


def config_differences(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """``'name: saved -> new'`` for every run-defining field that differs from ``saved``.

    A field missing from ``saved`` (a run made before the field existed) counts as its
    default value."""
    defaults = {**{f.name: f.default for f in _FIELDS.values()}, **LEGACY_VALUES}
    names = dict.fromkeys([*saved, *run_fields(config)])
    return [
        f'{n}: {saved.get(n, defaults.get(n))!r} -> {getattr(config, n, None)!r}'
        for n in names
        if saved.get(n, defaults.get(n)) != getattr(config, n, None)
    ]
