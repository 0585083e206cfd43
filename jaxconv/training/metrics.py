"""Run outputs: ``metrics.jsonl`` (one JSON object per epoch), ``summary.json``, ``curves.png``.

Only the first process writes them (every process holds the same, replicated metrics).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_FILE = 'metrics.jsonl'
SUMMARY_FILE = 'summary.json'
CURVES_FILE = 'curves.png'
CONFIG_FILE = 'config.json'


def read_metrics(workdir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``. A last line without its newline is a record whose write a
    crash cut short; its epoch was never checkpointed (records are appended before the
    checkpoint), so it is dropped rather than parsed."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    complete = path.read_text().split('\n')[:-1]
    return [json.loads(line) for line in complete if line.strip()]


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temporary name and rename, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + '\n')
    os.replace(tmp, path)


class MetricsLog:
    """``metrics.jsonl``: appended once per epoch, truncated to a checkpoint on resume."""

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
        self.path = Path(workdir) / METRICS_FILE
        self.enabled = enabled

    def keep_epochs_before(self, epoch: int) -> list[dict[str, Any]]:
        """Drop records of epochs >= ``epoch`` (written after the checkpoint being resumed)."""
        records = [r for r in read_metrics(self.path.parent) if r['epoch'] < epoch]
        if self.enabled:
            tmp = self.path.with_name(f'.{self.path.name}.tmp')
            tmp.write_text(''.join(json.dumps(r) + '\n' for r in records))
            os.replace(tmp, self.path)
        return records

    def append(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, 'a') as f:
                f.write(json.dumps(record) + '\n')
                f.flush()
                os.fsync(f.fileno())


def plot_curves(records: list[dict[str, Any]], path: str | os.PathLike, *, title: str = '') -> None:
    """Train and test loss (left) and accuracy (right) per epoch, as a PNG (Agg backend)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    epochs = [r['epoch'] + 1 for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, 'loss', 'loss'), (ax_acc, 'accuracy', 'accuracy')):
        for split, style in (('train', 'o-'), ('test', 's--')):
            ax.plot(epochs, [r[f'{split}_{key}'] for r in records], style, label=f'{split} {label}')
        ax.set_xlabel('epoch')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if epochs:
        for ax in (ax_loss, ax_acc):
            ax.set_xticks(epochs if len(epochs) <= 20 else ax.get_xticks())
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
