"""How the train step's time grows with batch size and image size, jaxconv against torch.

    python benchmarks/scaling.py [--arch vgg11 --arch resnet18] [--batches 16,32,64,128,256,512]
                                 [--sizes 32,96,224] [--size-batch 16] [--repeats 7]

Two sweeps per arch: batch size at 32×32, then image size at ``--size-batch`` images per step
(a small batch keeps 224×224 within memory and time). Each point times jaxconv's train step and
the torch twin's eager NCHW and channels_last steps interleaved (as ``speed.py`` does; add
``--compile`` for torch.compile, slow to compile at every point) and prints one markdown table
row: ms per step, images/s, and jaxconv ÷ best torch. A point that fails (e.g. out of memory)
prints its error instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure


def measure_point(arch: str, batch: int, size: int, args) -> dict:
    import jax
    import jax.numpy as jnp

    from benchmarks import jax_side, torch_side
    from benchmarks.timing import Variant, time_interleaved

    model = jax_side.build_model(arch, size)
    x, y = jax_side.random_batch(batch, size)
    step = jax_side.train_step(
        model, jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))
    )
    variants = [Variant('jaxconv', step.run, batch)]
    for v in ('eager', 'channels_last', *(('compile',) if args.compile else ())):
        twin = torch_side.torch_twin(arch, model, size)
        ts = torch_side.train_step(
            twin, x, y, v, lr=jax_side.LEARNING_RATE, momentum=jax_side.MOMENTUM
        )
        variants.append(Variant(f'torch_{v}', ts.run, batch))
    time_interleaved(variants, args.repeats, warmup=1, min_run_s=args.min_run_s)
    rates = {v.name: v.images_per_s for v in variants if not v.error}
    torch_best = max((r for n, r in rates.items() if n.startswith('torch_')), default=None)
    return {
        'arch': arch,
        'batch': batch,
        'size': size,
        'rates': rates,
        'errors': {v.name: v.error for v in variants if v.error},
        'ratio': rates.get('jaxconv', 0) / torch_best if torch_best else None,
    }


def row(p: dict, names: list[str]) -> str:
    cells = [p['arch'], str(p['batch']), f'{p["size"]}']
    for n in names:
        rate = p['rates'].get(n)
        cells.append('-' if rate is None else f'{1000 * p["batch"] / rate:.0f} ms / {rate:.0f}')
    cells.append('-' if p['ratio'] is None else f'{p["ratio"]:.2f}')
    return '| ' + ' | '.join(cells) + ' |'


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', action='append', default=[])
    ap.add_argument('--batches', default='16,32,64,128,256,512')
    ap.add_argument('--sizes', default='32,96,224')
    ap.add_argument('--size-batch', type=int, default=16)
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--min-run-s', type=float, default=0.3)
    ap.add_argument('--compile', action='store_true', help='also time torch.compile')
    args = ap.parse_args(argv)
    configure()
    import torch

    torch.set_num_threads(__import__('os').cpu_count())
    archs = args.arch or ['vgg11', 'resnet18']
    names = ['jaxconv', 'torch_eager', 'torch_channels_last'] + (
        ['torch_compile'] if args.compile else []
    )
    print(
        '| arch | batch | image | '
        + ' | '.join(f'{n} (ms/step / img/s)' for n in names)
        + ' | jaxconv ÷ best torch |'
    )
    print('|' + '---|' * (4 + len(names)))
    points = [(b, 32) for b in map(int, args.batches.split(','))] + [
        (args.size_batch, s) for s in map(int, args.sizes.split(','))
    ]
    for arch in archs:
        for batch, size in points:
            try:
                p = measure_point(arch, batch, size, args)
                print(row(p, names), flush=True)
                for n, e in p['errors'].items():
                    print(f'|  | | | {n}: {e} |', flush=True)
            except Exception as error:  # noqa: BLE001 - e.g. out of memory at 224
                print(
                    f'| {arch} | {batch} | {size} | failed: {type(error).__name__}: '
                    f'{str(error).splitlines()[0][:120]} |',
                    flush=True,
                )


if __name__ == '__main__':
    main()
