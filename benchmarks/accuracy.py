"""Every course network's default recipe, run on the real Fashion-MNIST files and reported.

    python benchmarks/accuracy.py run --data-dir DIR lenet vgg11 ...   # train (or --resume)
    python benchmarks/accuracy.py collect                              # runs -> results file
    python benchmarks/accuracy.py report                               # results -> README, docs

``run`` trains ``python train.py --arch ARCH --data-dir DIR --workdir ROOT/ARCH`` (plus any
options after ``--``), continuing with ``--resume`` where the workdir has a checkpoint, and
records the CPU of each segment in ``ROOT/ARCH/hosts.jsonl``. ``collect`` reads each finished
run's ``summary.json``, ``metrics.jsonl`` and ``config.json`` into one results file,
``jaxconv/training/accuracy_results.json``, then ``report`` regenerates from that file alone the
README's accuracy table, the time-to-accuracy row and ``docs/accuracy_curves.png``. The
``measured`` column of ``train.py --help`` reads the same file (``jaxconv.training.measured``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxconv.training.measured import RESULTS_FILE, load_results  # noqa: E402
from jaxconv.training.metrics import read_metrics, write_json_atomic  # noqa: E402

#: The course's printed Fashion-MNIST test accuracy (d2l, PyTorch edition, chapters 7-8) and
#: the target, 3 points above it (issue 12); ResNeXt and the dropout MLP have no course figure.
TARGETS = {
    'lenet': (0.73, 0.76),
    'alexnet': (0.83, 0.86),
    'vgg11': (0.90, 0.93),
    'nin': (0.87, 0.90),
    'googlenet': (0.80, 0.83),
    'resnet18': (0.90, 0.93),
    'densenet': (0.89, 0.92),
    'resnext': (None, 0.90),
    'mlp_dropout': (None, 0.88),
}
#: The time-to-accuracy row's bar (Fashion-MNIST's own table: ResNet-18 0.949, VGG-16 0.935).
SPEEDRUN_ACCURACY = 0.93
DEFAULT_ROOT = REPO / 'runs' / 'accuracy'
README = REPO / 'README.md'
FIGURE = REPO / 'docs' / 'accuracy_curves.png'
TABLE_BEGIN, TABLE_END = '<!-- accuracy-table: begin -->', '<!-- accuracy-table: end -->'


def train_command(arch: str, extra: list[str]) -> list[str]:
    """The command as the README shows it (the data directory as DIR)."""
    return ['python', 'train.py', '--arch', arch, '--data-dir', 'DIR', *extra]


def run(archs: list[str], data_dir: str, root: Path, extra: list[str]) -> int:
    """Train each arch's default recipe in ``root/ARCH``, resuming what a checkpoint allows."""
    from jaxconv.conv_autotune import cpu_isa, cpu_model

    for arch in archs:
        workdir = root / arch
        resume = (workdir / 'checkpoints').is_dir() and any((workdir / 'checkpoints').iterdir())
        cmd = [
            sys.executable,
            str(REPO / 'train.py'),
            '--arch',
            arch,
            '--data-dir',
            data_dir,
            '--workdir',
            str(workdir),
            *extra,
            *(['--resume'] if resume else []),
        ]
        workdir.mkdir(parents=True, exist_ok=True)
        with open(workdir / 'hosts.jsonl', 'a') as f:
            f.write(
                json.dumps(
                    {
                        'cpu_model': cpu_model(),
                        'cpu_isa': cpu_isa(),
                        'started': _now(),
                        'resume': resume,
                        'command': train_command(arch, extra),
                    }
                )
                + '\n'
            )
        print(f'accuracy.py: {" ".join(cmd)}', flush=True)
        rc = subprocess.call(cmd, cwd=REPO)
        if rc != 0:
            print(
                f'accuracy.py: {arch} stopped with exit code {rc}; run again to resume',
                file=sys.stderr,
            )
            return rc
    return 0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')


def collect_row(workdir: Path) -> dict | None:
    """One finished run as a results row (None while it has no summary.json)."""
    summary_path = workdir / 'summary.json'
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text())
    records = read_metrics(workdir)
    hosts = (
        [
            json.loads(line)
            for line in (workdir / 'hosts.jsonl').read_text().splitlines()
            if line.strip()
        ]
        if (workdir / 'hosts.jsonl').exists()
        else []
    )
    return {
        'arch': summary['arch'],
        'command': ' '.join(hosts[0]['command']) if hosts else None,
        'final_test_accuracy': summary['final_test_accuracy'],
        'best_test_accuracy': summary['best_test_accuracy'],
        'epochs': summary['epochs'],
        'wall_seconds': summary['wall_seconds'],
        'images_per_sec': statistics.median(r['images_per_sec'] for r in records),
        'cpu_models': sorted({h['cpu_model'] for h in hosts}),
        'segments': len(hosts),
        'test_accuracy': [r['test_accuracy'] for r in records],
        'elapsed_seconds': [r['elapsed_seconds'] for r in records],
        'config': summary['config'],
        'collected': _now(),
    }


def collect(root: Path, results_file: Path = RESULTS_FILE) -> dict:
    """Add every finished run under ``root`` to the results file (a rerun replaces its row)."""
    results = load_results(results_file)
    workdirs = sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []
    for workdir in workdirs:
        row = collect_row(workdir)
        if row is not None:
            results[row['arch']] = row
            print(
                f'accuracy.py: {row["arch"]}: {row["final_test_accuracy"]:.4f} after '
                f'{row["epochs"]} epochs, {row["wall_seconds"] / 60:.1f} min'
            )
    write_json_atomic(results_file, {'runs': dict(sorted(results.items()))})
    return results


def render_table(results: dict) -> str:
    """The README's accuracy table and time-to-accuracy line, from the results alone."""
    lines = [
        '| arch | command | epochs | test accuracy | course → target | wall | train img/s | CPU |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for arch, row in sorted(
        results.items(),
        key=lambda kv: list(TARGETS).index(kv[0]) if kv[0] in TARGETS else len(TARGETS),
    ):
        course, target = TARGETS.get(arch, (None, None))
        acc = row['final_test_accuracy']
        mark = '' if target is None else (' ✓' if acc >= target else ' ✗')
        bar = (
            f'{course:.2f} → {target:.2f}'
            if course is not None
            else f'– → {target:.2f}'
            if target is not None
            else '–'
        )
        lines.append(
            f'| {arch} | `{row["command"]}` | {row["epochs"]} | **{acc:.3f}**{mark} '
            f'| {bar} | {row["wall_seconds"] / 60:.0f} min | '
            f'{row["images_per_sec"]:,.0f} | {", ".join(row["cpu_models"])} |'
        )
    best = time_to_accuracy(results)
    lines.append('')
    if best is None:
        lines.append(f'Time to {SPEEDRUN_ACCURACY}: no measured run has reached it yet.')
    else:
        arch, epoch, seconds = best
        lines.append(
            f"Time to {SPEEDRUN_ACCURACY}: **{seconds / 60:.1f} min**, {arch}'s "
            f'default recipe (`{results[arch]["command"]}`), after epoch {epoch}.'
        )
    return '\n'.join(lines)


def time_to_accuracy(results: dict, bar: float = SPEEDRUN_ACCURACY):
    """(arch, epoch, seconds) of the run that reached ``bar`` soonest, or None."""
    firsts = []
    for arch, row in results.items():
        reached = [
            (seconds, epoch)
            for epoch, (acc, seconds) in enumerate(
                zip(row['test_accuracy'], row['elapsed_seconds']), 1
            )
            if acc >= bar
        ]
        if reached:
            firsts.append((*reached[0], arch))
    if not firsts:
        return None
    seconds, epoch, arch = min(firsts)
    return arch, epoch, seconds


def replace_table(readme: str, table: str) -> str:
    begin, end = readme.index(TABLE_BEGIN) + len(TABLE_BEGIN), readme.index(TABLE_END)
    return readme[:begin] + '\n' + table + '\n' + readme[end:]


def plot(
    results: dict,
    path: Path = FIGURE,
    title: str = 'Fashion-MNIST, default recipes (benchmarks/accuracy.py)',
) -> None:
    """Every run's test accuracy per epoch in one figure."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    longest = max((len(row['test_accuracy']) for row in results.values()), default=0)
    for arch, row in results.items():
        accs = row['test_accuracy']
        marker = 'o' if len(accs) <= 40 else None  # dots would hide a long run's line
        ax.plot(range(1, len(accs) + 1), accs, marker=marker, label=f'{arch} ({accs[-1]:.3f})')
    if longest > 50:  # a 300-epoch run beside 10-epoch ones: log epochs keep both readable
        ax.set_xscale('log')
    ax.axhline(SPEEDRUN_ACCURACY, color='grey', lw=0.8, ls='--')
    ax.set(
        xlabel='epoch',
        ylabel='test accuracy',
        title=title,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results: dict) -> None:
    README.write_text(replace_table(README.read_text(), render_table(results)))
    if results:
        plot(results)
    print(
        f'accuracy.py: README table and {FIGURE.relative_to(REPO)} from '
        f'{RESULTS_FILE.relative_to(REPO)} ({len(results)} runs)'
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = argv[argv.index('--') + 1 :] if '--' in argv else []
    argv = argv[: argv.index('--')] if '--' in argv else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest='command', required=True)
    p_run = sub.add_parser('run', help='train default recipes (resuming), then collect')
    p_run.add_argument('archs', nargs='+', choices=sorted(TARGETS), metavar='ARCH')
    p_run.add_argument('--data-dir', required=True, help='the official Fashion-MNIST files')
    for p in (p_run, sub.add_parser('collect', help='finished runs -> results file, report')):
        p.add_argument('--root', type=Path, default=DEFAULT_ROOT, help='one workdir per arch')
    sub.add_parser('report', help='results file -> README table and figure')
    p_plot = sub.add_parser(
        'plot', help='the curves of the finished runs under --root (e.g. recipes tried), by folder'
    )
    p_plot.add_argument('--root', type=Path, required=True)
    p_plot.add_argument('--out', type=Path, required=True, help='the figure (.png)')
    p_plot.add_argument('--title', default='Fashion-MNIST, recipes tried')
    args = parser.parse_args(argv)
    if args.command == 'plot':
        rows = {d.name: collect_row(d) for d in sorted(args.root.iterdir()) if d.is_dir()}
        plot({name: row for name, row in rows.items() if row is not None}, args.out, args.title)
        return 0
    if args.command == 'run':
        rc = run(args.archs, args.data_dir, args.root, extra)
        if rc:
            return rc
    results = collect(args.root) if args.command in ('run', 'collect') else load_results()
    report(results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
