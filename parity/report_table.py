"""The README's parity table: the worst measured error per arch and dtype.

    python -m parity.report_table [--archs lenet resnet18 ...] [--steps 10] [--output FILE]

One row per arch and dtype, one column per comparison (``parity.compare``), each the worst
relative error over that comparison's rows, at the arch's parity profile (image size, batch):
eval-mode forward, train-mode forward with the BatchNorm buffers after the step, loss and
gradients, and an N-step SGD-momentum trajectory (losses and final parameters). A float32
cell shows jaxconv's error against torch float64 and, after it, torch float32's own; a float64
cell is jaxconv against torch float64. A cell marked ✗ is outside its bound. float32
trajectories are reported, not judged: both frameworks drift from float64 as training
amplifies rounding (``python -m parity.drift`` plots it step by step).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from parity.archs import course_archs, parity_archs
from parity.compare import forward_diff, grad_diff, train_step_diff, trajectory_diff
from parity.metrics import Report
from parity.pair import DTYPES, make_long_run_pair, make_pair, parity_profile

COLUMNS = {
    'forward': 'eval forward',
    'train': 'train-mode forward + BN buffers',
    'grads': 'loss + gradients',
    'trajectory': 'trajectory',
}


@dataclass
class Row:
    arch: str
    dtype: str
    image_size: int
    batch_size: int
    errors: dict[str, float] = field(default_factory=dict)
    torch_errors: dict[str, float | None] = field(default_factory=dict)
    ok: dict[str, bool | None] = field(default_factory=dict)  # None: reported, not judged
    trajectory_input: str | None = None  # when the trajectory ran at the profile's long_run

    def add(self, kind: str, report: Report):
        self.errors[kind] = report.worst_error
        self.torch_errors[kind] = report.worst_torch_error
        judged = not (kind == 'trajectory' and self.dtype == 'float32')
        self.ok[kind] = report.ok if judged else None


def measure(archs: list[str], *, steps: int = 10, dtypes=DTYPES, log=None) -> list[Row]:
    """Run the four comparisons for each arch and dtype. The trajectory gets a fresh pair, at
    the profile's ``long_run`` size where it has one (BatchNorm nets train chaotically on a few
    values per channel: ``parity.pair.Profile``)."""
    rows = []
    for arch in archs:
        for dtype in dtypes:
            start = time.time()
            pair = make_pair(arch, dtype)
            row = Row(arch, dtype, pair.image_size, pair.batch_size)
            row.add('forward', forward_diff(pair))
            row.add('train', train_step_diff(pair))
            row.add('grads', grad_diff(pair))
            pair = make_long_run_pair(arch, dtype)
            if parity_profile(arch).long_run:
                row.trajectory_input = f'{pair.batch_size}×{pair.image_size}²'
            row.add('trajectory', trajectory_diff(pair, steps=steps).report)
            rows.append(row)
            if log:
                log(f'{arch} {dtype}: {time.time() - start:.0f}s')
    return rows


def _cell(row: Row, kind: str) -> str:
    text = f'{row.errors[kind]:.1e}'
    if row.torch_errors[kind] is not None:
        text += f' / {row.torch_errors[kind]:.1e}'
    if kind == 'trajectory' and row.trajectory_input:
        text += f' (at {row.trajectory_input})'
    return text + ' ✗' if row.ok[kind] is False else text


def markdown(rows: list[Row], steps: int | None = None) -> str:
    trajectory = f'{steps}-step trajectory' if steps else COLUMNS['trajectory']
    header = [
        'arch',
        'dtype',
        'input',
        COLUMNS['forward'],
        COLUMNS['train'],
        COLUMNS['grads'],
        trajectory,
    ]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        cells = [row.arch, row.dtype, f'{row.batch_size}×{row.image_size}²'] + [
            _cell(row, kind) for kind in COLUMNS
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m parity.report_table',
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        '--archs',
        nargs='+',
        choices=parity_archs(),
        metavar='ARCH',
        help='default: the course archs (the tv_* variants take much longer)',
    )
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--output', help='also write the table to this file')
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error('--steps must be at least 1')
    rows = measure(
        args.archs or course_archs(),
        steps=args.steps,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    table = markdown(rows, args.steps)
    print(table)
    if args.output:
        with open(args.output, 'w') as f:
            f.write(table + '\n')
    return 0 if all(ok is not False for r in rows for ok in r.ok.values()) else 1


if __name__ == '__main__':
    sys.exit(main())
