"""Weight-gradient matmuls (P^T · dY, a long contraction over N·H·W) on XLA and on torch.

    python benchmarks/tn_matmul.py [--shape 32768,147,64 ...] [--repeats 11]

Every im2col, banded and col2im lowering gets its dW as ``P^T @ dY``: P (M, K) the patch matrix,
dY (M, N) the output gradient, M = N·H·W. XLA:CPU gives YNNPACK only dots whose left operand is
row-major and contracted on its last axis, so this one runs on Eigen; ``profile_step.py`` puts it
at the top of LeNet, ResNet-18, ResNeXt, DenseNet, GoogLeNet and NiN. Timed side by side:

* ``xla``: the dot as autodiff writes it (``dot_general`` contracting axis 0 of both);
* ``xla_dyT``: dY transposed into its own buffer first, then a plain (YNN) matmul, giving
  dW^T (N, K);
* ``xla_PT``: P transposed into its own buffer first, then a plain (YNN) matmul giving dW
  itself (K, N): cheap where M is only the batch, as in a Linear layer's weight gradient;
* ``xla_splitK``: the contraction cut into ``SPLIT_K`` blocks of rows, one batched dot over the
  blocks and a sum of the partial products (split-K, as GPU GEMMs do for long contractions);
* ``torch``: ``torch.mm(P.t(), dY)`` on the same data (torch's CPU sgemm).

The default shapes are the slowest such dots of the course networks at batch 128.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure

#: (M, K, N) of the slowest weight-gradient dots in ``profile_step.py``, batch 128.
SHAPES = (
    (12288, 225, 66),  # LeNet conv1, banded
    (4608, 240, 64),  # LeNet conv2, banded
    (32768, 147, 64),  # the 7x7/2 stem (ResNet-18, ResNeXt, DenseNet, GoogLeNet), banded
    (28800, 363, 96),  # NiN's 11x11/4 stem, banded
    (8192, 288, 160),  # a DenseNet 3x3 conv, im2col
    (16384, 576, 128),  # a VGG-11 3x3 conv, chunked im2col
    (4096, 2304, 256),  # a VGG-11 3x3 conv, chunked im2col
)


#: How many row blocks ``xla_splitK`` cuts M into (M is divided by it, or the form is skipped).
SPLIT_K = 4


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = text.split(',')
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SystemExit(f'--shape {text!r}: expected M,K,N (positive integers)')
    return tuple(int(p) for p in parts)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--shape', action='append', type=parse_shape, metavar='M,K,N')
    ap.add_argument('--repeats', type=int, default=11)
    args = ap.parse_args(argv)
    configure()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from jaxconv import conv_autotune

    def xla(p, g):
        return jax.lax.dot_general(p, g, (((0,), (0,)), ((), ())))

    def xla_dyt(p, g):
        return jax.lax.optimization_barrier(jnp.transpose(g)) @ p

    def xla_pt(p, g):
        return jax.lax.optimization_barrier(jnp.transpose(p)) @ g

    def xla_split_k(p, g):
        (m, k), n = p.shape, g.shape[1]
        blocks = (p.reshape(SPLIT_K, m // SPLIT_K, k), g.reshape(SPLIT_K, m // SPLIT_K, n))
        return jax.lax.dot_general(*blocks, (((1,), (1,)), ((0,), (0,)))).sum(0)

    print(f'cpu: {conv_autotune.cpu_model()} ({conv_autotune.cpu_isa()}); torch threads '
          f'{torch.get_num_threads()}; median of {args.repeats}, GFLOP/s', flush=True)  # fmt: skip
    rows = []
    for m, k, n in args.shape or SHAPES:
        rng = np.random.default_rng(0)
        p_np = rng.standard_normal((m, k), dtype=np.float32)
        g_np = rng.standard_normal((m, n), dtype=np.float32)
        p, g = jnp.asarray(p_np), jnp.asarray(g_np)
        pt, gt = torch.from_numpy(p_np), torch.from_numpy(g_np)
        runs = {}
        forms = [('xla', xla), ('xla_dyT', xla_dyt), ('xla_PT', xla_pt)]
        if m % SPLIT_K == 0:
            forms.append(('xla_splitK', xla_split_k))
        for name, fn in forms:
            compiled = jax.jit(fn).lower(p, g).compile()
            runs[name] = lambda c=compiled, p=p, g=g: c(p, g).block_until_ready()
        runs['torch'] = lambda pt=pt, gt=gt: torch.mm(pt.t(), gt)
        reference = np.asarray(runs['xla']())
        assert np.allclose(np.asarray(runs['xla_dyT']()).T, reference, rtol=1e-3, atol=1e-2)
        assert np.allclose(np.asarray(runs['xla_PT']()), reference, rtol=1e-3, atol=1e-2)
        if 'xla_splitK' in runs:
            assert np.allclose(np.asarray(runs['xla_splitK']()), reference, rtol=1e-3, atol=1e-2)
        times = {name: [] for name in runs}
        for run in runs.values():
            run()  # warm up
        for _ in range(args.repeats):
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        flop = 2 * m * k * n
        row = {'shape': (m, k, n)}
        for name, ts in times.items():
            row[name] = flop / sorted(ts)[len(ts) // 2] / 1e9
        rows.append(row)
        print(f'{m}x{k}x{n}: ' + ', '.join(f'{name} {row[name]:.0f}' for name in runs), flush=True)
    return rows


if __name__ == '__main__':
    main()
