"""``python -m jaxconv.evaluate RUN_DIR [--step N] [--split test]``: a run's checkpoint on a split.

Reports the mean loss, top-1 accuracy, per-class accuracy, the confusion matrix (rows: true
class, columns: predicted) and images/s, and writes them as JSON and the matrix as a PNG. It
runs the training loop's own eval step (``jaxconv.training.steps.make_eval_step``) over the same
``eval_batches`` at the run's batch size and ``--limit-eval``, so on the run's last checkpoint
the accuracy is the one ``metrics.jsonl`` and ``summary.json`` recorded, to the last digit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxconv.data import FOLDER, DataError, eval_batches, load_folder, load_split, tfds_data_dir
from jaxconv.runs import LoadedRun, RunError, load_run
from jaxconv.training import steps as train_steps
from jaxconv.training.metrics import write_json_atomic
from jaxconv.training.sharding import data_parallel

PROG = 'jaxconv evaluate'
EVAL_DIR = 'evaluation'


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate a run's checkpoint: loss, accuracy, per-class "
        'accuracy, confusion matrix (JSON and PNG), images/s.',
    )
    add = parser.add_argument
    add('run_dir', metavar='RUN_DIR', help='the run (a train.py --workdir)')
    add('--step', type=int, metavar='N', help='checkpoint step (default: the latest)')
    add('--split', choices=('test', 'train'), default='test', help='(default: %(default)s)')
    add(
        '--limit',
        type=int,
        metavar='N',
        help="the first N examples (default: the run's "
        '--limit-eval for test, --limit-train for train)',
    )
    add('--batch-size', type=int, metavar='N', help="default: the run's batch size")
    add('--data-dir', metavar='DIR', help="default: the run's --data-dir")
    add('--tfds-dir', metavar='DIR', help="default: the run's --tfds-dir")
    add('--out', metavar='DIR', help=f'where the JSON and PNG go (default: RUN_DIR/{EVAL_DIR})')
    return parser


def evaluate_run(
    run: LoadedRun,
    *,
    split: str = 'test',
    limit: int | None = None,
    batch_size: int | None = None,
    data_dir=None,
    tfds_dir=None,
) -> dict[str, Any]:
    """The report of ``run`` on ``split`` (see the module docstring), with per-example
    ``labels`` and ``predicted`` classes."""
    config, spec = run.config, run.spec
    if config.dataset == FOLDER:  # decoded and split as fit did (same cache, same seed)
        folder = load_folder(
            data_dir or config.data_dir,
            image_size=config.image_size,
            channels=spec.image_shape[-1],
            val_fraction=config.val_fraction,
            seed=config.seed,
            cache_dir=tfds_data_dir(tfds_dir or config.tfds_dir),
        )
        images, labels = (
            (folder.train_x, folder.train_y) if split == 'train' else (folder.test_x, folder.test_y)
        )
    else:
        images, labels = load_split(
            config.dataset,
            split,
            data_dir=data_dir or config.data_dir,
            tfds_dir=tfds_dir or config.tfds_dir,
        )
    if limit is None:
        limit = config.limit_eval if split == 'test' else config.limit_train
    images, labels = images[:limit], np.asarray(labels[:limit], np.int32)
    batch_size = batch_size or config.batch_size
    dp = data_parallel(1)
    split_model = train_steps.split_model(run.model)
    run.model.eval()
    state = dp.replicate({'params': split_model.params, 'batch_stats': split_model.batch_stats})
    rngs = dp.replicate(split_model.rngs)
    step = train_steps.make_eval_step(
        split_model,
        spec=spec,
        image_size=config.image_size,
        replicated=dp.replicated,
        batch=dp.batch,
    )
    outputs, started, first_done = [], time.perf_counter(), None
    for x, y, mask in eval_batches(images, labels, batch_size):
        outputs.append(jax.device_get(step(state, rngs, *dp.global_batch(x, y, mask))))
        if first_done is None:  # the first batch compiles: the clock starts after it
            first_done = time.perf_counter()
    seconds = time.perf_counter() - (first_done or started)
    timed = len(images) - min(batch_size, len(images)) if len(outputs) > 1 else len(images)
    count = max(sum(int(o['count']) for o in outputs), 1)
    predicted = np.concatenate([o['predicted'] for o in outputs])[: len(labels)]
    k = spec.num_classes
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {
        name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
        for i, name in enumerate(spec.class_names)
    }
    return {
        'run_dir': str(run.path),
        'arch': config.arch,
        'dataset': config.dataset,
        'split': split,
        'step': run.step,
        'examples': len(labels),
        'loss': sum(float(o['loss_sum']) for o in outputs) / count,
        'accuracy': sum(int(o['correct']) for o in outputs) / count,
        'per_class_accuracy': per_class,
        'class_names': list(spec.class_names),
        'confusion': confusion.tolist(),
        'images_per_sec': timed / seconds if seconds > 0 and timed else None,
        'labels': labels.tolist(),
        'predicted': predicted.tolist(),
    }


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    confusion = np.asarray(report['confusion'])
    names = report['class_names']
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(names), 0.8 + 0.6 * len(names)))
    ax.imshow(confusion, cmap='Blues')
    for (i, j), n in np.ndenumerate(confusion):
        ax.text(
            j,
            i,
            str(n),
            ha='center',
            va='center',
            fontsize=7,
            color='white' if n > confusion.max() / 2 else 'black',
        )
    ax.set_xticks(range(len(names)), names, rotation=60, ha='right', fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel('predicted')
    ax.set_ylabel('true')
    ax.set_title(
        f'{report["arch"]} step {report["step"]}, {report["split"]}: '
        f'accuracy {report["accuracy"]:.4f}',
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        run = load_run(args.run_dir, args.step)
        report = evaluate_run(
            run,
            split=args.split,
            limit=args.limit,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
            tfds_dir=args.tfds_dir,
        )
    except (RunError, DataError) as e:
        print(f'{prog}: {e}', file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else run.path / EVAL_DIR
    out.mkdir(parents=True, exist_ok=True)
    stem = f'{report["split"]}-step{report["step"]}'
    write_json_atomic(out / f'{stem}.json', report)
    plot_confusion(report, out / f'{stem}-confusion.png')
    rate = report['images_per_sec']
    print(
        f'{report["arch"]} checkpoint {report["step"]} on {report["examples"]} {args.split} '
        f'images: loss {report["loss"]:.4f}, top-1 accuracy {report["accuracy"]:.4f}, '
        f'{f"{rate:.0f}" if rate else "-"} img/s'
    )
    width = max(len(n) for n in report['class_names'])
    for name, acc in report['per_class_accuracy'].items():
        print(f'  {name:<{width}}  {"-" if acc is None else f"{acc:.4f}"}')
    print(f'wrote {out / f"{stem}.json"} and {out / f"{stem}-confusion.png"}')
    return 0


if __name__ == '__main__':
    sys.exit(main(prog='python -m jaxconv.evaluate'))
