"""Pools as strided views (``jaxconv.pooling``) against ``lax.reduce_window``, interleaved.

    python benchmarks/pools.py --arch alexnet,googlenet,densenet [--batch-size 128]

For each arch, three compiled train steps in one process, timed interleaved as ``speed.py``
times its variants: jaxconv's pools ('views'); the same with the pool gradients reading
``dy`` as XLA fuses it ('views_dy_fused': ``pooling._computed_once`` made the identity, so
XLA:CPU fuses dy's producers into every tap); and the pools that
``reduce_window`` gives (XLA's ``select_and_scatter`` max-pool gradient and its reduce_window
sum pool). This is the evidence for ``jaxconv.pooling``; the other forms live here only.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure


def _reduce_window(x, init, op, window, strides, pads):
    import jax

    return jax.lax.reduce_window(
        x, init, op, (1, *window, 1), (1, *strides, 1), [(0, 0), *pads, (0, 0)]
    )


def reduce_window_max_pool(x, window, strides, pads):
    import jax
    import numpy as np

    # A numpy constant: reduce_window's init must not be traced, or JAX cannot differentiate it.
    return _reduce_window(x, np.array(-np.inf, x.dtype), jax.lax.max, window, strides, pads)


def reduce_window_sum_pool(x, window, strides, pads):
    import jax
    import numpy as np

    return _reduce_window(x, np.array(0, x.dtype), jax.lax.add, window, strides, pads)


@contextlib.contextmanager
def dy_fused_pools():
    """jaxconv's pools, but the pool gradients' ``dy`` left for XLA to fuse into each tap."""
    with mock.patch('jaxconv.pooling._computed_once', lambda dy: dy):
        yield


@contextlib.contextmanager
def reduce_window_pools():
    """Trace jaxconv's pool layers with ``reduce_window`` instead of ``jaxconv.pooling``."""
    with (
        mock.patch('jaxconv.layers.max_pool', reduce_window_max_pool),
        mock.patch('jaxconv.layers.sum_pool', reduce_window_sum_pool),
    ):
        yield


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', default='alexnet,vgg11,nin,googlenet,resnet18,densenet')
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--image-size', type=int, default=None, help='default: max(32, the minimum)')
    ap.add_argument('--repeats', type=int, default=7)
    args = ap.parse_args(argv)
    configure()
    import jax.numpy as jnp

    from benchmarks import jax_side
    from benchmarks.timing import Variant, time_interleaved
    from jaxconv.registry import min_image_size

    results = {}
    for arch in args.arch.split(','):
        size = args.image_size or max(32, min_image_size(arch))
        x, y = jax_side.random_batch(args.batch_size, size)
        x, y = jnp.asarray(x), jnp.asarray(y)
        variants = []
        for name, context in (
            ('views', contextlib.nullcontext),
            ('views_dy_fused', dy_fused_pools),
            ('reduce_window', reduce_window_pools),
        ):
            with context():
                step = jax_side.train_step(jax_side.build_model(arch, size), x, y)
            variants.append(Variant(name, step.run, args.batch_size))
        time_interleaved(variants, args.repeats)
        results[arch] = {v.name: v.images_per_s for v in variants}
        views = variants[0]
        print(
            f'{arch} ({size}², batch {args.batch_size}): '
            + ', '.join(
                f'{v.name} {v.images_per_s:.0f} img/s (spread {v.spread:.2f})' for v in variants
            )
            + ''.join(
                f', views ÷ {v.name} {views.images_per_s / v.images_per_s:.2f}'
                for v in variants[1:]
            ),
            flush=True,
        )
    return results


if __name__ == '__main__':
    main()
