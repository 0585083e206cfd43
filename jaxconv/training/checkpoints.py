"""Orbax checkpoints of the train state, one per epoch (and one when a run is interrupted).

Each checkpoint is the step number's directory under ``<workdir>/checkpoints`` holding the train
state (params, batch stats, optimizer state, step) and a JSON ``meta`` item (epoch, position
inside the epoch, partial epoch sums, elapsed time, the run-defining config). Orbax writes into a
temporary directory and renames it when complete, so a run killed while saving leaves the previous
checkpoint as the latest valid one. ``max_to_keep`` bounds the disk use.

Orbax does not notice a checkpoint damaged after it was written (a truncated or bit-flipped
array file restores as different numbers, or fails deep inside tensorstore), so each save also
writes ``integrity.json`` into the step's directory: the size and sha256 of every file. A
resumed run takes the newest checkpoint that still matches it, moving damaged ones aside as
``damaged-<step>`` and saying so (:meth:`Checkpoints.latest_intact_step`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxconv.training.errors import ConfigError

CHECKPOINT_DIR = 'checkpoints'
INTEGRITY_FILE = 'integrity.json'
DAMAGED_PREFIX = 'damaged-'


class DamagedCheckpointError(ConfigError):
    """No checkpoint of a run to resume matches its ``integrity.json``."""


def file_digests(step_dir: Path) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of every file under ``step_dir`` but the manifest."""
    out = {}
    for path in sorted(step_dir.rglob('*')):
        if path.is_file() and path.name != INTEGRITY_FILE:
            digest = hashlib.sha256()
            with open(path, 'rb') as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b''):
                    digest.update(chunk)
            out[str(path.relative_to(step_dir))] = [path.stat().st_size, digest.hexdigest()]
    return out


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the train state it is restored into (another arch, dataset,
    optimizer...)."""


def _leaf_shapes(tree) -> dict[str, tuple[int, ...]]:
    """'params.net.layers.0.kernel.value' -> shape, comparable across container types (a
    template's nnx.State and tuples vs the nested dicts and lists of a template-free restore)."""

    def name(entry):
        for attr in ('key', 'idx', 'name'):
            if hasattr(entry, attr):
                return str(getattr(entry, attr))
        return str(entry)

    return {
        '.'.join(name(e) for e in path): tuple(np.shape(leaf))
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


class Checkpoints:
    """The checkpoints of one workdir. All processes of a multi-process run must call save."""

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.path.join(os.fspath(workdir), CHECKPOINT_DIR))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Write ``state`` and ``meta`` as checkpoint ``step`` and wait until it is complete."""
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._manager.wait_until_finished()
        if jax.process_index() == 0:
            step_dir = Path(self.directory) / str(step)
            tmp = step_dir / f'.{INTEGRITY_FILE}.tmp'
            tmp.write_text(json.dumps(file_digests(step_dir), indent=0))
            os.replace(tmp, step_dir / INTEGRITY_FILE)

    def damage(self, step: int) -> str | None:
        """What is wrong with checkpoint ``step`` against its ``integrity.json``, or None (intact,
        or written before manifests existed: nothing to check against)."""
        step_dir = Path(self.directory) / str(step)
        try:
            expected = json.loads((step_dir / INTEGRITY_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            return f'{INTEGRITY_FILE} unreadable ({e})'
        actual = file_digests(step_dir)
        problems = [f'{name} missing' for name in expected if name not in actual]
        for name, (size, digest) in expected.items():
            if name in actual and actual[name][0] != size:
                problems.append(f'{name} has {actual[name][0]} bytes, {size} were written')
            elif name in actual and actual[name][1] != digest:
                problems.append(f'{name} changed (sha256 differs)')
        return '; '.join(problems) or None

    def latest_intact_step(self, report: Callable[[str], None]) -> int | None:
        """The newest checkpoint that matches its manifest; newer damaged ones are reported and
        moved aside (``damaged-<step>``), so the resumed run can write those steps again.

        None without any checkpoint; ``DamagedCheckpointError`` when every one is damaged."""
        damaged = []
        for step in sorted(self.all_steps(), reverse=True):
            problem = self.damage(step)
            if problem is None:
                break
            damaged.append((step, problem))
        else:
            step = None
        if damaged and step is None:
            raise DamagedCheckpointError(
                f'no intact checkpoint in {self.directory}: '
                + '; '.join(f'checkpoint {s}: {p}' for s, p in damaged)
                + '; use --overwrite to start again'
            )
        for bad, problem in damaged:
            report(
                f'checkpoint {bad} is damaged ({problem}): moved aside to '
                f'{DAMAGED_PREFIX}{bad}; resuming from checkpoint {step} instead'
            )
            if jax.process_index() == 0:
                target, n = Path(self.directory) / f'{DAMAGED_PREFIX}{bad}', 1
                while target.exists():  # damaged before, at the same step
                    target, n = Path(self.directory) / f'{DAMAGED_PREFIX}{bad}.{n}', n + 1
                os.replace(Path(self.directory) / str(bad), target)
        if damaged:
            self._manager.reload()
        return step

    def restore(self, step: int, like=None) -> tuple[Any, dict[str, Any]]:
        """Checkpoint ``step`` as ``(state, meta)``.

        ``like`` (a train state) gives the structure, dtypes and shardings to restore into;
        without it the state comes back as orbax stores it (nested dicts of arrays), e.g. to
        inspect a checkpoint.
        """
        abstract = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            out = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except ValueError as e:
            if like is None:
                raise
            raise CheckpointMismatchError(self._mismatch(step, abstract)) from e
        return out['state'], dict(out['meta'])

    def latest_meta(self) -> dict[str, Any] | None:
        """The meta of the latest checkpoint (no array is read), or None without a checkpoint."""
        step = self.latest_step()
        if step is None:
            return None
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out['meta'])

    def _mismatch(self, step: int, abstract) -> str:
        """One sentence on how checkpoint ``step`` differs from the template ``abstract``."""
        saved, meta = self.restore(step)
        have = _leaf_shapes(saved)
        want = {k: tuple(v) for k, v in _leaf_shapes(abstract).items()}
        diffs = [
            f'{k}: checkpoint {have.get(k, "missing")}, model {want.get(k, "missing")}'
            for k in sorted(have.keys() | want.keys())
            if have.get(k) != want.get(k)
        ]
        arch = (meta.get('run') or {}).get('arch')
        return (
            f'checkpoint {step} in {self.directory}'
            f'{f" (a {arch} run)" if arch else ""} does not fit this train state: '
            f'{len(diffs)} array(s) differ ({"; ".join(diffs[:4])}'
            f'{"; ..." if len(diffs) > 4 else ""})'
        )

    def close(self) -> None:
        self._manager.close()
