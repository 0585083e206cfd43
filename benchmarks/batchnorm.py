"""BatchNorm's backward: the closed form (``layers.batch_norm_train``) against autodiff of the
same two-pass forward, as jaxconv's train step, interleaved in one process.

    python benchmarks/batchnorm.py --arch resnet18,densenet [--batch-size 128]

The evidence behind the ``custom_vjp``: for each arch, one compiled train step per variant,
timed as ``speed.py`` times its variants. The 'autodiff' variant is this file's only copy of the
old rule (JAX differentiating the forward), patched in while its step is traced.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure


@contextlib.contextmanager
def autodiff_batch_norm():
    """Trace BatchNorm's training forward without its ``custom_vjp``."""
    from jaxconv import layers

    def differentiated(x, scale, bias, eps):
        return layers._batch_norm_forward(x, scale, bias, eps)[:3]

    closed_form = layers.batch_norm_train
    layers.batch_norm_train = differentiated
    try:
        yield
    finally:
        layers.batch_norm_train = closed_form


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', default='resnet18,resnext,densenet,tv_resnet18')
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--json', help='write the figures to this file')
    args = ap.parse_args(argv)
    configure()
    import jax.numpy as jnp

    from benchmarks import jax_side
    from benchmarks.timing import Variant, time_interleaved
    from jaxconv.conv_autotune import cpu_model
    from jaxconv.registry import min_image_size

    results = {}
    for arch in args.arch.split(','):
        size = max(32, min_image_size(arch))
        x, y = jax_side.random_batch(args.batch_size, size)
        x, y = jnp.asarray(x), jnp.asarray(y)
        variants = []
        for name, context in (
            ('closed_form', contextlib.nullcontext),
            ('autodiff', autodiff_batch_norm),
        ):
            with context():
                step = jax_side.train_step(jax_side.build_model(arch, size), x, y)
            variants.append(Variant(name, step.run, args.batch_size))
        time_interleaved(variants, args.repeats)
        results[arch] = {v.name: v.images_per_s for v in variants}
        closed, auto = results[arch]['closed_form'], results[arch]['autodiff']
        print(
            f'{arch} ({size}², batch {args.batch_size}): closed form {closed:.0f} img/s, '
            f'autodiff {auto:.0f} img/s, ratio {closed / auto:.3f} '
            f'(spread {max(v.spread for v in variants):.2f})',
            flush=True,
        )
    if args.json:
        meta = {'cpu_model': cpu_model(), 'batch_size': args.batch_size, 'repeats': args.repeats}
        Path(args.json).write_text(json.dumps({'meta': meta, 'img_per_s': results}, indent=1))
    return results


if __name__ == '__main__':
    main()
