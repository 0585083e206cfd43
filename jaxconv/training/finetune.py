"""Fine-tuning: start a run from given weights (``--init-from``), train only the head
(``--trainable head``).

``--init-from`` takes a torch state_dict file (``.pth``/``.pt``, read with
``weights_only=True``), a ``.safetensors`` file (read without torch) or a jaxconv run directory
(its latest checkpoint or ``--init-step N``). Every source goes through the torch key map
(``jaxconv.weights.load_state_dict``), so a ``tv_*`` arch takes torchvision's own state_dict, a
head of another class count is re-initialised and a first conv of another input width is
adapted, each reported in one line. The resolved source (absolute path, step, sha256) is
recorded in the run's config: ``--resume`` checks that the weights did not change, and a later
reader knows where they came from. Everything here happens before the workdir is written, so a
bad weight file leaves nothing behind.

``--trainable head`` updates only the head (``jaxconv.weights.head_layers``) through
``optax.multi_transform``; the rest of the model runs in eval mode, as torch's ``model.eval()``
on a frozen backbone: BatchNorm normalises with, and keeps, its running statistics, and dropout
is off.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import optax
from flax import nnx

from jaxconv.keymap import TransferError
from jaxconv.training.config import TrainConfig
from jaxconv.training.errors import ConfigError
from jaxconv.training.metrics import CONFIG_FILE

TRAINABLE = ('all', 'head')


@dataclasses.dataclass(frozen=True)
class InitSource:
    """Where the initial weights come from, resolved: a file, or a run's checkpoint ``step``."""

    path: Path
    step: int | None
    sha256: str


def _recorded_init(workdir: str) -> dict:
    """``init_from`` / ``init_step`` / ``init_sha256`` of the run in ``workdir``, if any."""
    try:
        saved = json.loads((Path(workdir) / CONFIG_FILE).read_text())['config']
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: saved.get(k) for k in ('init_from', 'init_step', 'init_sha256')}


def resolve_source(init_from: str, init_step: int | None) -> InitSource:
    """The file or run checkpoint ``init_from`` names, with its sha256 (``ConfigError`` if none)."""
    from jaxconv.runs import RunError, read_config
    from jaxconv.training.checkpoints import Checkpoints
    from jaxconv.weights import sha256

    path = Path(init_from).resolve()
    if path.is_dir():
        read_config(path)  # a RunError if it is no run
        checkpoints = Checkpoints(path)
        try:
            steps = checkpoints.all_steps()
        finally:
            checkpoints.close()
        if not steps:
            raise RunError(f'{path} holds no checkpoint')
        step = max(steps) if init_step is None else init_step
        if step not in steps:
            raise RunError(
                f'{path} has no checkpoint {step}; it has {", ".join(map(str, sorted(steps)))}'
            )
        return InitSource(path, step, sha256(Path(checkpoints.directory) / str(step)))
    if init_step is not None:
        raise ConfigError(f'--init-step needs --init-from RUN_DIR; {path} is a file')
    if not path.is_file():
        raise ConfigError(f'--init-from {init_from}: no such file or run directory')
    return InitSource(path, None, sha256(path))


def read_source(source: InitSource) -> dict:
    """The torch state_dict (numpy) the source holds."""
    from jaxconv.runs import load_run
    from jaxconv.weights import read_state_dict, state_dict

    if source.step is not None:
        return state_dict(load_run(source.path, source.step).model)
    return read_state_dict(source.path)


def _has_checkpoint(workdir: str) -> bool:
    from jaxconv.training.checkpoints import CHECKPOINT_DIR

    directory = Path(workdir) / CHECKPOINT_DIR
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def initialise(
    config: TrainConfig, model: nnx.Module, *, log: Callable[[str], None]
) -> TrainConfig:
    """Load ``config.init_from`` into ``model`` (in place); the config with the source resolved.

    On ``--resume`` without ``--init-from`` the resumed run's source is taken over; with a
    checkpoint to resume from the weights come from that checkpoint, and
    the source is only hashed, for the resume check. Raises ``ConfigError`` (a bad file, weights
    that do not fit: every key listed); the model is untouched then.
    """
    from jaxconv.runs import RunError
    from jaxconv.weights import WeightFileError, load_state_dict

    if config.resume and config.init_from is None:
        recorded = _recorded_init(config.workdir)
        if recorded.get('init_from'):
            config = config.replace(
                init_from=recorded['init_from'], init_step=recorded['init_step']
            )
    if config.init_from is None:
        return config
    try:
        source = resolve_source(config.init_from, config.init_step)
        config = config.replace(
            init_from=str(source.path), init_step=source.step, init_sha256=source.sha256
        )
        if config.resume and _has_checkpoint(config.workdir):
            return config
        what = f'--init-from {source.path}' + (
            f' (checkpoint {source.step})' if source.step is not None else ''
        )
        adaptations = load_state_dict(model, read_source(source), what=f'the weights of {what}')
    except (WeightFileError, TransferError, RunError) as e:
        raise ConfigError(f'--init-from: {e}') from None
    for line in adaptations:
        log(f'--init-from: {line}')
    log(f'initialised from {what}, sha256 {source.sha256}')
    return config


def head_paths(model: nnx.Module) -> set[tuple]:
    """The ``nnx`` paths of the head's parameters."""
    from jaxconv.weights import head_layers

    head = {
        id(v)
        for layer in head_layers(model)
        for v in vars(layer).values()
        if isinstance(v, nnx.Param)
    }
    return {
        tuple(path)
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Param) and id(node) in head
    }


def trainable_labels(params: nnx.State, paths: set[tuple]) -> nnx.State:
    """'head' or 'frozen' per parameter of ``params`` (the labels of ``multi_transform``)."""
    return nnx.from_flat_state(
        [
            (path, 'head' if tuple(path) in paths else 'frozen')
            for path, _ in nnx.to_flat_state(params)
        ]
    )


def restrict(
    tx: optax.GradientTransformation, model: nnx.Module, params: nnx.State, trainable: str
) -> optax.GradientTransformation:
    """``tx`` for ``--trainable all``; for 'head', ``tx`` on the head and zero updates elsewhere
    (weight decay included: a frozen weight does not decay)."""
    if trainable == 'all':
        return tx
    labels = trainable_labels(params, head_paths(model))
    return optax.multi_transform({'head': tx, 'frozen': optax.set_to_zero()}, labels)


def freeze_backbone(split, trainable: str):
    """The split model whose train step runs the eval-mode graph when only the head trains."""
    if trainable == 'all':
        return split
    return dataclasses.replace(split, train_graph=split.eval_graph)


def count_trainable(params: nnx.State, model: nnx.Module, trainable: str) -> int:
    paths = None if trainable == 'all' else head_paths(model)
    return sum(
        int(v[...].size)
        for path, v in nnx.to_flat_state(params)
        if paths is None or tuple(path) in paths
    )


__all__ = [
    'TRAINABLE',
    'InitSource',
    'count_trainable',
    'freeze_backbone',
    'head_paths',
    'initialise',
    'resolve_source',
    'restrict',
    'trainable_labels',
]
