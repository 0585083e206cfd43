"""Plot float32 drift along training: jaxconv against torch float64, beside torch float32
against the same torch float64, step by step (``docs/parity_drift.png``).

    python -m parity.drift [--archs lenet resnet18 densenet vgg11] [--steps 100] [--output PATH]

Both float32 runs start from the same weights and see the same batches as the float64 run;
rounding makes them drift from it, and training amplifies the drift (BatchNorm on small
batches and ReLU kinks most). jaxconv is as faithful as torch when its curve lies on torch's.
Top row: relative error of the loss at each step; bottom row: the worst parameter tensor's
relative error after each step (``parity.metrics``).
"""

from __future__ import annotations

import argparse
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt

from parity.archs import parity_archs
from parity.compare import Trajectory, trajectory_diff
from parity.pair import make_pair

DEFAULT_ARCHS = ('lenet', 'vgg11', 'resnet18', 'densenet')
FLOOR = 1e-9  # exact agreement is drawn at the floor of the log scale


def float32_runs(archs, steps: int, optimizer: str = 'momentum') -> dict[str, Trajectory]:
    return {
        arch: trajectory_diff(
            make_pair(arch, 'float32'), steps=steps, optimizer=optimizer, track_params=True
        )
        for arch in archs
    }


def plot(runs: dict[str, Trajectory], path: str, optimizer: str = 'momentum'):
    fig, axes = plt.subplots(2, len(runs), figsize=(3.6 * len(runs), 6), squeeze=False, sharex=True)
    for col, (arch, run) in enumerate(runs.items()):
        for row, (series, what) in enumerate(
            [(run.loss_drift, 'loss'), (run.param_drift, 'worst parameter')]
        ):
            ax = axes[row][col]
            steps = range(1, len(series['jaxconv']) + 1)
            ax.semilogy(
                steps,
                [max(v, FLOOR) for v in series['torch']],
                color='tab:orange',
                lw=2.5,
                alpha=0.7,
                label='torch float32',
            )
            ax.semilogy(
                steps,
                [max(v, FLOOR) for v in series['jaxconv']],
                color='tab:blue',
                lw=1.2,
                label='jaxconv float32',
            )
            ax.grid(True, which='major', alpha=0.3)
            if row == 0:
                ax.set_title(
                    f'{arch} ({run.report.title.split(", ", 1)[1].split(", dropout")[0]})',
                    fontsize=9,
                )
            if row == 1:
                ax.set_xlabel('optimizer step')
            if col == 0:
                ax.set_ylabel(f'{what}: relative error\nagainst torch float64')
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        f'float32 drift from torch float64 along training (SGD {optimizer}, '
        'same weights and batches)',
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m parity.drift',
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        '--archs', nargs='+', choices=parity_archs(), default=DEFAULT_ARCHS, metavar='ARCH'
    )
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--output', default='docs/parity_drift.png')
    args = parser.parse_args(argv)
    runs = float32_runs(args.archs, args.steps)
    for arch, run in runs.items():
        j, t = run.param_drift['jaxconv'][-1], run.param_drift['torch'][-1]
        print(
            f'{arch}: after {args.steps} steps, worst parameter error jaxconv {j:.2e}, '
            f'torch float32 {t:.2e}; loss {run.loss_drift["jaxconv"][-1]:.2e} vs '
            f'{run.loss_drift["torch"][-1]:.2e}'
        )
    plot(runs, args.output)
    print(f'wrote {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
