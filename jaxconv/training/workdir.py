"""What a workdir may hold before a run starts, checked before anything is written.

A workdir that already holds a run (``config.json``, ``metrics.jsonl`` or checkpoints) is only
reused on purpose: ``--resume`` continues it, and only with the same run-defining settings (see
:data:`jaxconv.training.config.RUN_FIELDS`); ``--overwrite`` deletes that run's outputs (and
nothing else in the directory) and starts again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from jaxconv.training.checkpoints import CHECKPOINT_DIR, Checkpoints
from jaxconv.training.config import TrainConfig, config_differences, run_fields
from jaxconv.training.conv_plan import CONV_PLAN_FILE
from jaxconv.training.errors import ConfigError
from jaxconv.training.metrics import (
    CONFIG_FILE,
    CURVES_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    write_json_atomic,
)

RUN_OUTPUTS = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CURVES_FILE, CHECKPOINT_DIR, CONV_PLAN_FILE)


@dataclasses.dataclass(frozen=True)
class WorkdirPlan:
    """The decision taken by :func:`plan_workdir`; :meth:`apply` carries it out."""

    path: Path
    holds_run: bool
    overwrite: bool

    def apply(self, config: TrainConfig, *, write: bool, spec=None) -> None:
        """Create the directory, delete an overwritten run, record the config (if ``write``).

        ``spec`` (the run's ``DatasetSpec``) goes into config.json as 'dataset': for a folder
        dataset its classes and training-split mean/std exist nowhere else, and evaluating or
        predicting later must normalise exactly as training did."""
        if not write:
            return
        if self.overwrite and self.holds_run:
            for name in RUN_OUTPUTS:
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        record = {'config': config.to_dict(), 'run': run_fields(config)}
        if spec is not None:
            record['dataset'] = dataclasses.asdict(spec)
        write_json_atomic(self.path / CONFIG_FILE, record)


def _has_checkpoints(path: Path) -> bool:
    ckpt = path / CHECKPOINT_DIR
    return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def _saved_run(path: Path) -> dict | None:
    """The run fields of the run in ``path``: config.json's, else (config.json lost) those the
    latest checkpoint's meta records; None when neither exists."""
    if (path / CONFIG_FILE).exists():
        try:
            return json.loads((path / CONFIG_FILE).read_text())['run']
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(
                f'cannot resume: {path / CONFIG_FILE} is unreadable ({e}); '
                f'use --overwrite to start again'
            ) from None
    if not _has_checkpoints(path):
        return None
    checkpoints = Checkpoints(path)
    try:
        meta = checkpoints.latest_meta()
    finally:
        checkpoints.close()
    return (meta or {}).get('run')


#: What a resumed run's data must share with the data it started on (a folder dataset's images
#: may change between the two; its path, in ``display_name``, may move).
DATASET_FIELDS = (
    'num_classes',
    'class_names',
    'image_shape',
    'mean',
    'std',
    'num_train',
    'num_test',
)


def dataset_differences(path: Path, spec) -> list[str]:
    """``'name: saved -> now'`` for every field of :data:`DATASET_FIELDS` in which ``spec``
    differs from the dataset recorded in ``path``'s config.json (none recorded: no difference)."""
    try:
        saved = json.loads((path / CONFIG_FILE).read_text()).get('dataset')
    except (OSError, ValueError):
        return []  # no or unreadable config.json: _saved_run has dealt with it
    if not saved:
        return []
    now = json.loads(json.dumps(dataclasses.asdict(spec)))  # tuples as JSON lists
    return [
        f'{n}: {saved.get(n)!r} -> {now.get(n)!r}'
        for n in DATASET_FIELDS
        if n in saved and saved[n] != now.get(n)
    ]


def plan_workdir(config: TrainConfig, spec=None) -> WorkdirPlan:
    """Check ``config.workdir`` against ``--resume`` / ``--overwrite``; raise ``ConfigError``.

    With ``spec`` (the run's ``DatasetSpec``), a resumed run must also find the data it started
    on: a folder dataset whose images were added, removed or changed since refuses."""
    path = Path(config.workdir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f'--workdir {path} exists and is not a directory')
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f'--workdir {path} cannot be created: {existing} is not a directory')
    holds_run = path.is_dir() and (
        (path / CONFIG_FILE).exists() or (path / METRICS_FILE).exists() or _has_checkpoints(path)
    )
    if holds_run and not (config.resume or config.overwrite):
        raise ConfigError(
            f'--workdir {path} already holds a run; pass --resume to continue it '
            f'or --overwrite to delete it and start again'
        )
    saved = _saved_run(path) if holds_run and config.resume else None
    if saved is not None:
        diffs = config_differences(saved, config)
        if diffs:
            raise ConfigError(
                f'cannot resume the run in {path} with a different configuration '
                f'({"; ".join(diffs)}); use the same settings, another --workdir, '
                f'or --overwrite'
            )
        changed = dataset_differences(path, spec) if spec is not None else []
        if changed:
            raise ConfigError(
                f'cannot resume the run in {path}: its data changed since it '
                f'started ({"; ".join(changed)}); restore the images, or start '
                f'again with another --workdir or --overwrite'
            )
    return WorkdirPlan(path, holds_run, config.overwrite)
