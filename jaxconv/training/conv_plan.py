"""The convolution plan is part of a run: written to the workdir, pinned again on ``--resume``.

Why: another lowering of the same convolution rounds differently, and autotuning may pick
another winner when a noisy machine re-measures. A resumed run therefore computes with the
plans its first part recorded (``conv_plan.json``), so it ends exactly as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from jaxconv import conv_lowering
from jaxconv.training.metrics import write_json_atomic

CONV_PLAN_FILE = 'conv_plan.json'


def read(workdir) -> dict[str, str]:
    """The plans a run recorded (``{shape_key: plan}``); empty for a run made before plans."""
    path = Path(workdir) / CONV_PLAN_FILE
    if not path.exists():
        return {}
    try:
        table = json.loads(path.read_text())['plans']
        for plan in table.values():
            conv_lowering.Plan.parse(plan)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f'{path} is not a conv plan file ({e}); delete it to re-plan') from None
    return table


class RunPlan:
    """Pins the recorded plans and records the new ones while the block runs."""

    def __init__(self, workdir, pinned: dict[str, str]):
        self.path = Path(workdir) / CONV_PLAN_FILE
        self.pinned = dict(pinned)
        self._calls: list = []
        self._written: dict[str, str] | None = None

    @contextlib.contextmanager
    def active(self):
        with conv_lowering.fixed_plans(self.pinned), conv_lowering.recording() as calls:
            self._calls = calls
            yield self

    def table(self) -> dict[str, str]:
        return {**self.pinned, **conv_lowering.plan_table(self._calls)}

    def write(self) -> None:
        """Write the plans traced so far (when they changed since the last write)."""
        table = self.table()
        if table and table != self._written:
            write_json_atomic(self.path, {'mode': conv_lowering.mode(), 'plans': table})
            self._written = table
