"""Parity against torch under each convolution lowering (one configuration per process).

    python benchmarks/lowering_parity.py --config auto           # the plans training uses
    python benchmarks/lowering_parity.py --config every-branch   # thresholds forced to 1
    python benchmarks/lowering_parity.py --config im2col         # one lowering everywhere
    ... [--arch vgg11 --arch resnet18] [--grads vgg11,resnet18,resnext] [--dtype float64]

The parity tests run at the small batches of ``parity.pair`` profiles, where ``cpu_plan``
mostly picks its small-problem branches. ``every-branch`` sets its thresholds so that the
same small shapes take the large-map branches too: dW by im2col in batch chunks of one image,
per-tap matmuls wherever "small" applies. ``xla`` / ``im2col`` / ``taps`` / ``direct`` /
``grouped`` / ``s2d`` / ``banded`` / ``col2im`` force one lowering for every pass of every
conv. For each arch:
eval-mode forward in float32 and float64, and for the ``--grads`` archs the loss and every
parameter gradient in train mode, with the parity harness's own bounds (``parity.compare``).
A plan is read when a model is traced, hence one configuration per process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.conv_lowering import LOWERINGS

CONFIGS = ('auto', 'every-branch', *LOWERINGS)
DEFAULT_GRADS = 'vgg11,resnet18,resnext,googlenet,densenet,alexnet,nin,lenet'


def apply_config(name: str):
    from jaxconv import conv_lowering as cl

    if name == 'every-branch':
        cl.SMALL_VIEW_BYTES = 1
        cl.PATCH_BUDGET_BYTES = 1
        cl.TAPS_MIN_CHANNELS = 1
        return None
    return None if name == 'auto' else name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--config', choices=CONFIGS, default='auto')
    ap.add_argument('--arch', action='append', default=[])
    ap.add_argument('--grads', default=DEFAULT_GRADS, help="comma list, 'all' or 'none'")
    ap.add_argument('--dtype', action='append', default=[], choices=('float32', 'float64'))
    args = ap.parse_args(argv)

    from jaxconv import conv_lowering as cl
    from parity.archs import course_archs
    from parity.compare import batches_pass, compare_on_batches, forward_diff, grad_diff
    from parity.pair import make_pair

    forced = apply_config(args.config)
    archs = args.arch or course_archs()
    grads = (
        archs
        if args.grads == 'all'
        else []
        if args.grads == 'none'
        else [a for a in args.grads.split(',') if a in archs]
    )
    dtypes = args.dtype or ['float32', 'float64']
    failures = 0
    print(
        f'config {args.config}: thresholds view<{cl.SMALL_VIEW_BYTES} B, patch chunk '
        f'{cl.PATCH_BUDGET_BYTES} B, taps from {cl.TAPS_MIN_CHANNELS} channels; '
        f'forced lowering: {forced}',
        flush=True,
    )
    with cl.lowering(forced):
        for arch in archs:
            for dtype in dtypes:
                t0 = time.perf_counter()
                pair = make_pair(arch, dtype)
                fwd = forward_diff(pair)
                line = (
                    f'{arch:12s} {dtype}  forward {fwd.worst_error:.1e} '
                    f'{"ok" if fwd.ok else "FAIL"}'
                )
                ok = fwd.ok
                if arch in grads:
                    if dtype == 'float64':
                        reports = [grad_diff(pair)]
                    else:
                        reports = compare_on_batches(grad_diff, pair)
                    passed = batches_pass(reports)
                    torch_err = reports[-1].worst_torch_error
                    line += (
                        f'  grads {reports[-1].worst_error:.1e}'
                        + (f' (torch f32 {torch_err:.1e})' if torch_err else '')
                        + f' {"ok" if passed else "FAIL"}'
                    )
                    ok = ok and passed
                failures += not ok
                print(f'{line}  [{time.perf_counter() - t0:.0f} s]', flush=True)
    print(f'config {args.config}: {failures} failing arch/dtype pairs')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
