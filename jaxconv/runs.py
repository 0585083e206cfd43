"""A finished (or interrupted) training run read back: its config, and its model at a checkpoint.

What ``export``, ``evaluate``, ``predict`` and ``train.py --init-from RUN_DIR`` share. The
model is rebuilt from the run's ``config.json`` exactly as ``fit`` built it, and its parameters
and BatchNorm statistics are filled from the orbax checkpoint without a train-state template,
so reading a run needs neither its optimizer nor its devices.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.data import DATASETS, DatasetSpec
from jaxconv.registry import create_model
from jaxconv.training.checkpoints import Checkpoints
from jaxconv.training.config import TrainConfig
from jaxconv.training.metrics import CONFIG_FILE


class RunError(ValueError):
    """A directory that is not a readable run (no config, no checkpoint, an unknown step)."""


@dataclasses.dataclass
class LoadedRun:
    """A run's resolved config, dataset spec and model (in eval mode) at checkpoint ``step``."""

    path: Path
    config: TrainConfig
    spec: DatasetSpec
    model: nnx.Module
    step: int
    checkpoint_dir: Path


def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The resolved ``TrainConfig`` recorded in ``RUN_DIR/config.json``. Fields this version
    does not know (a newer run) are ignored; fields it added since take their defaults."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        saved = json.loads(path.read_text())['config']
    except FileNotFoundError:
        raise RunError(f'{run_dir} is not a jaxconv run directory (no {CONFIG_FILE})') from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f'{path} is unreadable ({e})') from None
    known = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: v for k, v in saved.items() if k in known})


def read_spec(run_dir: str | os.PathLike, config: TrainConfig) -> DatasetSpec:
    """The run's ``DatasetSpec``: the one config.json records (a folder dataset's classes and
    training-split mean/std exist nowhere else), else the registered dataset's."""
    try:
        saved = json.loads((Path(run_dir) / CONFIG_FILE).read_text()).get('dataset')
    except (OSError, ValueError, AttributeError):
        saved = None
    if isinstance(saved, dict):
        known = DatasetSpec.__dataclass_fields__
        return DatasetSpec(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known}
        )
    if config.dataset not in DATASETS:
        raise RunError(f'{run_dir}: config.json records no dataset spec for {config.dataset!r}')
    return DATASETS[config.dataset]


def build_model(config: TrainConfig, spec: DatasetSpec) -> nnx.Module:
    """The run's model with fresh parameters, shaped as ``fit`` built it."""
    return create_model(
        config.arch,
        num_classes=spec.num_classes,
        in_channels=spec.image_shape[-1],
        image_size=config.image_size,
        rngs=nnx.Rngs(params=config.seed, dropout=config.seed),
        dtype=jnp.dtype(config.dtype),
    )


def _value(tree: Any, path: tuple) -> np.ndarray:
    node = tree
    for key in path:
        node = node[str(key)]
    if isinstance(node, dict) and 'value' in node:  # nnx.Variable's leaf in orbax's layout
        node = node['value']
    return np.asarray(node)


def fill_model(model: nnx.Module, saved_state: dict[str, Any]) -> None:
    """Copy a template-free checkpoint state's params and batch stats into ``model``."""
    for collection, kind in (('params', nnx.Param), ('batch_stats', nnx.BatchStat)):
        for path, var in nnx.to_flat_state(nnx.state(model, kind)):
            try:
                value = _value(saved_state[collection], path)
            except (KeyError, TypeError):
                raise RunError(
                    f'the checkpoint has no {collection} {".".join(map(str, path))}'
                ) from None
            if value.shape != var[...].shape:
                raise RunError(
                    f'checkpoint {collection} {".".join(map(str, path))} is '
                    f'{value.shape}, the model wants {var[...].shape}'
                )
            var[...] = jnp.asarray(value, dtype=var[...].dtype)


def load_run(run_dir: str | os.PathLike, step: int | None = None) -> LoadedRun:
    """The run in ``run_dir`` at checkpoint ``step`` (default: the latest)."""
    path = Path(run_dir)
    config = read_config(path)
    if config.dtype == 'float64':
        import jax

        jax.config.update('jax_enable_x64', True)
    spec = read_spec(path, config)
    model = build_model(config, spec)
    checkpoints = Checkpoints(path, max_to_keep=max(config.keep_checkpoints, 1))
    try:
        steps = checkpoints.all_steps()
        if not steps:
            raise RunError(f'{path} holds no checkpoint')
        if step is None:
            step = max(steps)
        elif step not in steps:
            raise RunError(
                f'{path} has no checkpoint {step}; it has {", ".join(map(str, sorted(steps)))}'
            )
        problem = checkpoints.damage(step)
        if problem:
            intact = [s for s in sorted(steps) if s != step and not checkpoints.damage(s)]
            raise RunError(
                f'checkpoint {step} in {path} is damaged ({problem}); '
                + (
                    f'intact: {", ".join(map(str, intact))} (pass --step)'
                    if intact
                    else 'no other checkpoint is intact'
                )
            )
        state, _ = checkpoints.restore(step)
    finally:
        checkpoints.close()
    fill_model(model, state)
    model.eval()
    return LoadedRun(path, config, spec, model, step, Path(checkpoints.directory) / str(step))
