"""The conv lowering modes against each other: jaxconv's train step under each, interleaved.

    python benchmarks/modes.py --arch lenet,vgg11 [--modes heuristic,autotune] [--batch-size 128]
    python benchmarks/modes.py --arch alexnet --modes heuristic --constant XLA_DX_MIN_CHANNELS=0

For each arch, one compiled train step per mode (``jaxconv.conv_lowering.lowering``), timed
interleaved as ``speed.py`` times its variants; compile time includes the autotuning of any
shape the cache does not hold yet. This is the evidence behind the default mode.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', default='lenet,vgg11,resnet18')
    ap.add_argument('--modes', default='heuristic,autotune')
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument(
        '--image-size', type=int, default=32, help="raised to an arch's minimum where it is larger"
    )
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument(
        '--dw-im2col-below',
        type=int,
        default=0,
        metavar='C',
        help='also time each mode with the weight gradient of every conv with C_in < C '
        '(not 1x1, not grouped) moved to im2col, chunked as cpu_plan chunks it (0: off)',
    )
    ap.add_argument(
        '--constant',
        action='append',
        default=[],
        metavar='NAME=VALUE',
        help="also time each mode with one of cpu_plan's thresholds (a conv_lowering constant) "
        'set to VALUE: a rule measured against the rule as it is',
    )
    args = ap.parse_args(argv)
    constants = [_parse_constant(c) for c in args.constant]
    configure()
    import jax.numpy as jnp

    from benchmarks import jax_side
    from benchmarks.timing import Variant, time_interleaved
    from jaxconv import conv_autotune, conv_lowering
    from jaxconv.registry import min_image_size

    results = {}
    for arch in args.arch.split(','):
        size = max(args.image_size, min_image_size(arch))
        x, y = jax_side.random_batch(args.batch_size, size)
        x, y = jnp.asarray(x), jnp.asarray(y)
        variants, compile_s = [], {}
        for mode in args.modes.split(','):
            t0, tuned = time.perf_counter(), conv_autotune.STATS.seconds
            with conv_lowering.lowering(mode), conv_lowering.recording() as calls:
                step = jax_side.train_step(jax_side.build_model(arch, size), x, y)
            compile_s[mode] = (time.perf_counter() - t0, conv_autotune.STATS.seconds - tuned)
            variants.append(Variant(mode, step.run, args.batch_size))
            table = dw_im2col_table(calls, args.dw_im2col_below)
            if table:
                name = f'{mode}+dW-im2col<{args.dw_im2col_below}'
                t0, tuned = time.perf_counter(), conv_autotune.STATS.seconds
                with conv_lowering.lowering(mode), conv_lowering.fixed_plans(table):
                    step = jax_side.train_step(jax_side.build_model(arch, size), x, y)
                compile_s[name] = (time.perf_counter() - t0, conv_autotune.STATS.seconds - tuned)
                variants.append(Variant(name, step.run, args.batch_size))
            for const, value in constants:
                name = f'{mode}+{const}={value}'
                t0, tuned = time.perf_counter(), conv_autotune.STATS.seconds
                with conv_lowering.lowering(mode), _constant(const, value):
                    step = jax_side.train_step(jax_side.build_model(arch, size), x, y)
                compile_s[name] = (time.perf_counter() - t0, conv_autotune.STATS.seconds - tuned)
                variants.append(Variant(name, step.run, args.batch_size))
        time_interleaved(variants, args.repeats)
        results[arch] = {v.name: v.images_per_s for v in variants}
        print(
            f'{arch} ({size}²): '
            + ', '.join(
                f'{v.name} {v.images_per_s:.0f} img/s (compile {compile_s[v.name][0]:.1f} s, '
                f'autotune {compile_s[v.name][1]:.1f} s, spread {v.spread:.2f})'
                for v in variants
            ),
            flush=True,
        )
    return results


def _parse_constant(text: str) -> tuple[str, int]:
    from jaxconv import conv_lowering as cl

    name, _, value = text.partition('=')
    if not (name.isupper() and hasattr(cl, name)) or not value.lstrip('-').isdigit():
        raise SystemExit(f'--constant {text!r}: expected NAME=INTEGER, NAME one of conv_lowering')
    return name, int(value)


@contextlib.contextmanager
def _constant(name: str, value: int):
    """``conv_lowering.NAME`` set to ``value`` while a step is traced (cpu_plan reads it then)."""
    from jaxconv import conv_lowering as cl

    old = getattr(cl, name)
    setattr(cl, name, value)
    try:
        yield
    finally:
        setattr(cl, name, old)


def dw_im2col_table(calls, below: int) -> dict[str, str]:
    """The recorded plans with dW moved to ``cpu_plan``'s chunked im2col where C_in <
    ``below`` (not 1x1, not grouped): the small-C_in weight-gradient rule, measured against
    the plan as it is."""
    from jaxconv import conv_lowering as cl

    return {
        c.key: str(c.plan._replace(dw=cl.chunked_im2col(c.x_shape, c.w_shape, c.spec)))
        for c in calls
        if c.x_shape[-1] < below and c.spec.groups == 1 and c.w_shape[:2] != (1, 1)
    }


if __name__ == '__main__':
    main()
