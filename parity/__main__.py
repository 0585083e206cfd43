"""``python -m parity --arch NAME``: run a jaxconv model and its torch twin on the same input and
print one row per layer, so a mismatch is located at the first layer where it appears.

    python -m parity --arch resnet18 --mode train --grads --steps 5 --dtype float64

Rows: layer outputs in execution order (name, shape, max|Δ|, relative error, bound, PASS/FAIL);
in train mode also every BatchNorm buffer after the step; with ``--grads`` the loss and one row
per parameter gradient; with ``--steps N`` the loss at each of N optimizer steps and every
parameter at the end. In float32 each row also shows torch float32's own error against torch
float64, the judge (see ``parity.compare``). Exit status 0 when every row is within its bound,
1 otherwise (2 for a usage error).
"""

from __future__ import annotations

import argparse
import sys

from parity.archs import parity_archs
from parity.compare import DROPOUT_MODES, grad_diff, layer_diff, train_step_diff, trajectory_diff
from parity.metrics import Report
from parity.optimizers import OPTIMIZER_CASES
from parity.pair import DTYPES, make_pair


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {value}')
    return value


def non_negative_int(text: str) -> int:
    return 0 if text.strip() == '0' else positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m parity',
        description='Compare a jaxconv model with its PyTorch twin, layer by layer.',
    )
    parser.add_argument(
        '--arch',
        required=True,
        choices=parity_archs(),
        metavar='NAME',
        help='registered architecture: ' + ', '.join(parity_archs()),
    )
    parser.add_argument(
        '--image-size',
        type=positive_int,
        metavar='N',
        help="input height and width (default: the arch's parity profile)",
    )
    parser.add_argument(
        '--batch-size',
        type=positive_int,
        metavar='N',
        help="batch size (default: the arch's parity profile)",
    )
    parser.add_argument(
        '--mode',
        choices=('eval', 'train'),
        default='eval',
        help='eval: running statistics; train: batch statistics (default eval)',
    )
    parser.add_argument('--dtype', choices=DTYPES, default='float32')
    parser.add_argument(
        '--grads', action='store_true', help='add one row per parameter gradient (and the loss)'
    )
    parser.add_argument(
        '--steps',
        type=non_negative_int,
        default=0,
        metavar='N',
        help='add the loss at each of N optimizer steps and the final weights',
    )
    parser.add_argument(
        '--optimizer',
        choices=sorted(OPTIMIZER_CASES),
        default='momentum',
        help='optimizer setting for --steps (parity.optimizers)',
    )
    parser.add_argument(
        '--dropout',
        choices=DROPOUT_MODES,
        default='off',
        help='off, or the same random masks on both sides (--mode train)',
    )
    parser.add_argument('--seed', type=int, default=0, help='seed of weights, inputs and masks')
    parser.add_argument(
        '--failures-only', action='store_true', help='print only the rows out of tolerance'
    )
    return parser


def run(args) -> list[Report]:
    """The reports ``python -m parity`` prints for parsed ``args``."""
    pair = make_pair(
        args.arch,
        args.dtype,
        image_size=args.image_size,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    reports = [layer_diff(pair, mode=args.mode, dropout=args.dropout, seed=args.seed)]
    if args.mode == 'train':
        reports.append(train_step_diff(pair, dropout=args.dropout, seed=args.seed))
    if args.grads:
        reports.append(grad_diff(pair, mode=args.mode, dropout=args.dropout, seed=args.seed))
    if args.steps:  # last: it trains the pair's models
        reports.append(
            trajectory_diff(
                pair,
                steps=args.steps,
                optimizer=args.optimizer,
                dropout=args.dropout,
                seed=args.seed,
            ).report
        )
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dropout == 'shared' and args.mode != 'train':
        parser.error('--dropout shared needs --mode train (eval mode has no dropout)')
    try:
        reports = run(args)
    except ValueError as error:  # e.g. an image size below the arch's minimum
        parser.error(str(error))
    for report in reports:
        print(report.table(only_failures=args.failures_only), end='\n\n')
    failures = [(r, r.first_failure) for r in reports if not r.ok]
    if not failures:
        print(f'{args.arch} ({args.dtype}): every row within tolerance')
        return 0
    report, first = failures[0]
    print(
        f'{args.arch} ({args.dtype}): MISMATCH; first at {first.name!r} '
        f'(relative error {first.error:.3g} > {first.bound:.3g}) in "{report.title}"'
    )
    return 1


if __name__ == '__main__':
    sys.exit(main())
