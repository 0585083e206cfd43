"""``python -m jaxconv.export RUN_DIR --out FILE.pt|FILE.safetensors [--step N]``.

Writes a run's trained parameters and BatchNorm buffers as a torch state_dict, through the same
key map the parity tests prove, so the torch twin loads it with ``strict=True``:
``parity.torch_model(arch, num_classes=..., in_channels=..., image_size=...)``, which for a
``tv_*`` arch is ``torchvision.models.NAME(num_classes=...)`` (its first conv made
``in_channels`` wide when that is not 3). A ``.safetensors`` file is written without torch.
"""

from __future__ import annotations

import argparse
import sys

from jaxconv.runs import RunError, load_run
from jaxconv.weights import (
    SAFETENSORS_SUFFIX,
    TORCH_SUFFIXES,
    WeightFileError,
    state_dict,
    write_state_dict,
)

PROG = 'jaxconv export'


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a run's weights as a torch state_dict (strict=True "
        'loadable by its torch twin).',
    )
    parser.add_argument('run_dir', metavar='RUN_DIR', help='the run (a train.py --workdir)')
    parser.add_argument(
        '--out',
        required=True,
        metavar='FILE',
        help=f'output file: {", ".join(TORCH_SUFFIXES)} (torch.save, needs '
        f'torch) or {SAFETENSORS_SUFFIX} (no torch)',
    )
    parser.add_argument(
        '--step', type=int, metavar='N', help='checkpoint step (default: the latest)'
    )
    return parser


def export(run_dir, out, step: int | None = None) -> str:
    """Export checkpoint ``step`` of ``run_dir`` to ``out``; returns the line that reports it."""
    run = load_run(run_dir, step)
    state = state_dict(run.model)
    path = write_state_dict(state, out)
    c = run.config
    return (
        f'wrote {len(state)} tensors of {c.arch} (checkpoint {run.step}) to {path}; load '
        f'with parity.torch_model({c.arch!r}, num_classes={run.spec.num_classes}, '
        f'in_channels={run.spec.image_shape[-1]}, image_size={c.image_size})'
        f'.load_state_dict(..., strict=True)'
    )


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        print(export(args.run_dir, args.out, args.step))
    except (RunError, WeightFileError) as e:
        print(f'{prog}: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(prog='python -m jaxconv.export'))
