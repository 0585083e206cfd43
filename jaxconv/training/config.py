"""The training configuration: one frozen dataclass, resolved against the recipe and checked.

``TrainConfig`` holds exactly what ``train.py`` accepts; fields left ``None`` take the value of the
architecture's recipe (:mod:`jaxconv.training.recipes`) in :func:`resolve`. ``RUN_FIELDS`` are the
fields that determine the trajectory of a run: a resumed run must agree on all of them, or it
would not continue the same run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxconv.data import DATASET_NAMES, FOLDER
from jaxconv.data.augment import AUGMENTATIONS
from jaxconv.optim import OPTIMIZERS
from jaxconv.training.errors import ConfigError
from jaxconv.training.recipes import SCHEDULES, augment_for, recipe_for


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. ``None`` means "the recipe's value"."""

    arch: str
    dataset: str = 'fashion_mnist'
    data_dir: str | None = None      # directory with the official files (else tfds lookup)
    tfds_dir: str | None = None      # where tfds prepares datasets (else $TFDS_DATA_DIR)
    channels: int | None = None      # --dataset folder: 1 or 3 (None: what most images have)
    val_fraction: float = 0.1        # --dataset folder without test/: share held out for testing
    augment: str | None = None       # 'none', 'flip', 'crop-flip' (None: the dataset's default)
    image_size: int | None = None
    batch_size: int | None = None    # global batch, over all devices and processes
    epochs: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9            # for 'momentum' and 'nesterov'
    schedule: str | None = None
    seed: int = 0
    dtype: str = 'float32'           # 'float64': exact math, for equivalence checks
    workdir: str | None = None       # default: runs/<arch>-<dataset>
    resume: bool = False
    overwrite: bool = False
    limit_train: int | None = None   # use the first N training examples
    limit_eval: int | None = None    # evaluate on the first N test examples
    devices: int | None = None       # None: every device JAX sees
    keep_checkpoints: int = 3
    progress: bool = True
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    distributed: bool = False        # jax.distributed.initialize() with cluster autodetection
    init_from: str | None = None     # start from these weights: .pth/.pt, .safetensors or a run
    init_step: int | None = None     # --init-from RUN_DIR: that run's checkpoint (else its latest)
    init_sha256: str | None = None   # set by fit: the sha256 of what --init-from resolved to
    trainable: str = 'all'           # 'head': only the classifier is updated (finetune.py)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


#: Fields a resumed run must share with the run it continues. ``epochs`` joins them when the
#: learning-rate schedule depends on the run's length (every schedule but 'constant').
RUN_FIELDS = ('arch', 'dataset', 'image_size', 'batch_size', 'optimizer', 'lr', 'weight_decay',
              'momentum', 'schedule', 'seed', 'dtype', 'limit_train', 'limit_eval', 'augment',
              'channels', 'val_fraction')

#: What a run saved before a field existed ran with, where that differs from the field's default
#: (``augment`` defaults to None, "the dataset's default", but every earlier run had none).
LEGACY_VALUES = {'augment': 'none'}


#: A resumed run must also train the same parameters and start from the same weights (their
#: sha256: the file may have moved, but not changed).
RUN_FIELDS += ('trainable', 'init_sha256')

#: Parameter and computation dtypes; float64 turns on ``jax_enable_x64`` for the process.
DTYPES = ('float32', 'float64')


def run_fields(config: TrainConfig) -> dict[str, Any]:
    """The trajectory-defining part of a resolved config (what resuming must match)."""
    names = RUN_FIELDS + (() if config.schedule == 'constant' else ('epochs',))
    return {name: getattr(config, name) for name in names}


def resolve(config: TrainConfig) -> TrainConfig:
    """Fill every ``None`` hyper-parameter from the recipe and check the values.

    Raises ``ConfigError`` naming the bad value and what is allowed; architecture-dependent
    checks (minimum image size) and device checks come later, once a model and devices exist.
    """
    from jaxconv.registry import list_models

    archs = list_models()
    if config.arch not in archs:
        raise ConfigError(f'unknown arch {config.arch!r}; choose one of: {", ".join(archs)}')
    if config.dataset not in DATASET_NAMES:
        raise ConfigError(f'unknown dataset {config.dataset!r}; choose one of: '
                          f'{", ".join(DATASET_NAMES)}')
    if config.dataset == FOLDER and config.data_dir is None:
        raise ConfigError('--dataset folder needs --data-dir DIR, DIR holding train/CLASS/*.png '
                          '(or .jpg ...) and optionally test/CLASS/...')
    recipe = recipe_for(config.arch)
    filled = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)
              if f.name in TrainConfig.__dataclass_fields__ and f.name != 'augment'
              and getattr(config, f.name) is None}
    if config.workdir is None:
        filled['workdir'] = f'runs/{config.arch}-{config.dataset}'
    if config.augment is None:
        filled['augment'] = augment_for(config.dataset, recipe)
    config = config.replace(**filled)

    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f'unknown optimizer {config.optimizer!r}; choose one of: '
                          f'{", ".join(OPTIMIZERS)}')
    if config.schedule not in SCHEDULES:
        raise ConfigError(f'unknown schedule {config.schedule!r}; choose one of: '
                          f'{", ".join(SCHEDULES)}')
    _positive_int(config, 'image_size', 'batch_size', 'keep_checkpoints')
    _positive_int(config, 'limit_train', 'limit_eval', 'devices', 'num_processes', optional=True)
    if not _is_int(config.epochs) or config.epochs < 0:
        raise ConfigError(f'--epochs must be a non-negative integer, got {config.epochs!r}')
    if not _is_int(config.seed) or config.seed < 0:
        raise ConfigError(f'--seed must be a non-negative integer, got {config.seed!r}')
    if config.dtype not in DTYPES:
        raise ConfigError(f'--dtype must be one of {", ".join(DTYPES)}, got {config.dtype!r}')
    if not (isinstance(config.lr, (int, float)) and math.isfinite(config.lr) and config.lr > 0):
        raise ConfigError(f'--lr must be a positive number, got {config.lr!r}')
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise ConfigError(f'--weight-decay must be >= 0, got {config.weight_decay!r}')
    if not 0 <= config.momentum < 1:
        raise ConfigError(f'--momentum must be in [0, 1), got {config.momentum!r}')
    if config.augment not in AUGMENTATIONS:
        raise ConfigError(f'--augment must be one of {", ".join(AUGMENTATIONS)}, '
                          f'got {config.augment!r}')
    if config.channels is not None and config.channels not in (1, 3):
        raise ConfigError(f'--channels must be 1 or 3, got {config.channels!r}')
    if not (isinstance(config.val_fraction, (int, float)) and 0 < config.val_fraction < 1):
        raise ConfigError(f'--val-fraction must be in (0, 1), got {config.val_fraction!r}')
    if config.trainable not in ('all', 'head'):
        raise ConfigError(f'--trainable must be all or head, got {config.trainable!r}')
    _positive_int(config, 'init_step', optional=True)
    if config.init_step is not None and config.init_from is None:
        raise ConfigError('--init-step needs --init-from RUN_DIR')
    if config.resume and config.overwrite:
        raise ConfigError('--resume and --overwrite exclude each other')
    explicit = (config.coordinator_address, config.num_processes, config.process_id)
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        raise ConfigError('--coordinator-address, --num-processes and --process-id go together')
    if config.process_id is not None and not 0 <= config.process_id < config.num_processes:
        raise ConfigError(f'--process-id must be in [0, {config.num_processes}), '
                          f'got {config.process_id}')
    return config


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(config, *names, optional=False):
    for name in names:
        v = getattr(config, name)
        if v is None and optional:
            continue
        if not _is_int(v) or v <= 0:
            flag = '--' + name.replace('_', '-')
            raise ConfigError(f'{flag} must be a positive integer, got {v!r}')


def config_differences(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """``'name: saved -> new'`` for every run-defining field that differs from ``saved``.

    A field missing from ``saved`` (a run made before the field existed) counts as its
    default value."""
    defaults = {**{f.name: f.default for f in dataclasses.fields(TrainConfig)}, **LEGACY_VALUES}
    names = dict.fromkeys([*saved, *run_fields(config)])
    return [f'{n}: {saved.get(n, defaults.get(n))!r} -> {getattr(config, n, None)!r}'
            for n in names if saved.get(n, defaults.get(n)) != getattr(config, n, None)]
