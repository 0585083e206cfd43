"""Per-layer evidence for ``jaxconv.conv_lowering``: time each pass of each lowering.

    python benchmarks/conv_layers.py --arch vgg11 [--batch-size 128] [--image-size 32]
    python benchmarks/conv_layers.py --shape 128,2,512,512,3,1,1,1   # N,H,Cin,Cout,k,s,p,groups
    python benchmarks/conv_layers.py --arch nin --pass dx --lowering xla --lowering taps

For every distinct convolution of the model (or each ``--shape``) it times the forward, the
input gradient (dx) and the weight gradient (dW) of every lowering on the whole batch, and of
the pass as ``cpu_plan`` runs it ('plan': its lowering, chunked where it says so), interleaved
(one call of each in turn, ``--repeats`` rounds); it reports the fastest call of each, in ms
and GFLOP/s. Lowerings known to take seconds on a shape (XLA's forward and
dx on maps of 2×2 or less) are timed once, with ``--include-slow``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv import conv_lowering as cl
from jaxconv.cpu_runtime import configure

PASSES = ('fwd', 'dx', 'dw')


def model_convs(arch: str, image_size: int, batch: int) -> list[tuple]:
    """Distinct (N, H, W, C_in, C_out, kh, kw, stride, padding, groups) of the model's convs."""
    from benchmarks.flops import layer_shapes  # noqa: PLC0415 - imports the model zoo

    seen = []
    for layer in layer_shapes(arch, image_size, batch):
        if layer.kind == 'conv' and layer.geometry not in seen:
            seen.append(layer.geometry)
    return seen


def pass_functions(name: str, spec: cl.ConvSpec):
    impl = cl._IMPLS[name]
    return {
        'fwd': jax.jit(lambda x, w, dy: impl(x, w, spec)),
        'dx': jax.jit(lambda x, w, dy: jax.vjp(lambda x: impl(x, w, spec), x)[1](dy)[0]),
        'dw': jax.jit(lambda x, w, dy: jax.vjp(lambda w: impl(x, w, spec), w)[1](dy)[0]),
    }


def plan_function(step: cl.Pass, pass_: str, spec: cl.ConvSpec):
    """One pass as the plan runs it (chunked where the plan says so)."""
    return jax.jit(
        lambda x, w, dy: cl.run_pass(step, pass_, spec, x, w, None if pass_ == 'fwd' else dy)
    )


def is_slow(name: str, pass_: str, x_shape, out_shape) -> bool:
    return name == 'xla' and pass_ != 'dw' and min(*x_shape[1:3], *out_shape[1:3]) <= 2


def measure(
    geometry, repeats: int, include_slow: bool, lowerings=cl.LOWERINGS, passes=PASSES
) -> dict:
    n, h, w, cin, cout, kh, kw, stride, padding, groups = geometry
    spec = cl.ConvSpec(stride, padding, (1, 1), groups)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((n, h, w, cin), np.float32))
    k = jnp.asarray(rng.standard_normal((kh, kw, cin // groups, cout), np.float32) * 0.05)
    y_shape = jax.eval_shape(lambda x, k: cl.conv_xla(x, k, spec), x, k).shape
    dy = jnp.asarray(rng.standard_normal(y_shape, np.float32))
    flops = 2 * np.prod(y_shape) * kh * kw * cin // groups
    chosen = cl.cpu_plan(x.shape, k.shape, spec)
    calls, times = {}, {}
    for name in (*lowerings, 'plan'):
        fns = (
            pass_functions(name, spec)
            if name != 'plan'
            else {p: plan_function(getattr(chosen, p), p, spec) for p in PASSES}
        )
        for pass_, fn in fns.items():
            if pass_ not in passes:
                continue
            if is_slow(name, pass_, x.shape, y_shape) and not include_slow:
                continue
            jax.block_until_ready(fn(x, k, dy))  # compile
            calls[name, pass_], times[name, pass_] = fn, []
    for r in range(repeats):
        for key, fn in calls.items():
            if r and is_slow(*key, x.shape, y_shape):
                continue
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, k, dy))
            times[key].append(time.perf_counter() - t0)
    best = {key: min(ts) for key, ts in times.items()}
    return {
        'geometry': geometry,
        'out': tuple(y_shape),
        'gflop': flops / 1e9,
        'best_s': best,
        'plan': chosen,
    }


def report(result, lowerings=cl.LOWERINGS, passes=PASSES) -> str:
    n, h, w, cin, cout, kh, kw, stride, padding, groups = result['geometry']
    head = (
        f'{h}x{w}x{cin}->{result["out"][1]}x{result["out"][2]}x{cout} k{kh}x{kw} '
        f's{stride[0]} p{padding[0]} g{groups}  ({result["gflop"]:.2f} GFLOP/pass)'
    )
    lines = [head]
    for pass_ in passes:
        cells = []
        for name in (*lowerings, 'plan'):
            t = result['best_s'].get((name, pass_))
            cells.append(
                f'{name:>6} '
                + (
                    '   skipped        '
                    if t is None
                    else f'{t * 1e3:8.2f} ms {result["gflop"] / t:6.1f} GF/s'
                )
            )
        lines.append(
            f'  {pass_:>3}: ' + ' | '.join(cells) + f'   (plan: {getattr(result["plan"], pass_)})'
        )
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument('--arch', action='append', default=[])
    ap.add_argument(
        '--shape',
        action='append',
        default=[],
        help='N,H,Cin,Cout,k,stride,padding,groups (square maps and kernels)',
    )
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--image-size', type=int, default=32)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--include-slow', action='store_true')
    ap.add_argument(
        '--lowering',
        action='append',
        choices=cl.LOWERINGS,
        help='time only these lowerings (and the plan); default: all',
    )
    ap.add_argument(
        '--pass', dest='passes', action='append', choices=PASSES, help='default: all three'
    )
    args = ap.parse_args(argv)
    configure()
    geometries = []
    for arch in args.arch:
        geometries += [
            g for g in model_convs(arch, args.image_size, args.batch_size) if g not in geometries
        ]
    for s in args.shape:
        n, h, cin, cout, k, st, p, g = (int(v) for v in s.split(','))
        geometries.append((n, h, h, cin, cout, k, k, (st, st), (p, p), g))
    lowerings, passes = tuple(args.lowering or cl.LOWERINGS), tuple(args.passes or PASSES)
    for g in geometries:
        result = measure(g, args.repeats, args.include_slow, lowerings, passes)
        print(report(result, lowerings, passes), flush=True)


if __name__ == '__main__':
    main()
