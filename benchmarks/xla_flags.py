"""XLA:CPU flags tried with evidence: the train step's speed under each, and whether it took effect.

    python benchmarks/xla_flags.py [--arch vgg11,resnet18,lenet] [--batch-size 128]

Each trial runs in a fresh process (XLA reads ``XLA_FLAGS`` once) and reports, per arch, the
jaxconv train step's img/s and how often the optimised HLO of that step names what the flag
should produce (oneDNN custom calls, YNN fusions, multi-output fusions): a flag XLA ignores
shows the baseline's counts. Trials run one after another, so compare them with care: the
baseline runs first and last, and the spread of its two figures is the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRIALS = {
    'baseline': '',
    'onednn dot,eltwise': (
        '--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot,eltwise'
    ),
    'ynn individual_dot,individual_convolution': (
        '--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution'
    ),
    'ynn + dot,eltwise': (
        '--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution,dot,eltwise'
    ),
    'ynn + dot,eltwise,reduce': (
        '--xla_cpu_experimental_ynn_fusion_type='
        'individual_dot,individual_convolution,dot,eltwise,reduce'
    ),
    'multi-output fusion': '--xla_backend_extra_options=xla_cpu_use_multi_output_fusion',
    'baseline (again)': '',
}

#: What to count in the optimised HLO.
MARKERS = {
    'onednn': r'__onednn',
    'ynn_fusion': r'__ynn_fusion',
    'convolution': r' convolution\(',
    'multi_output_fusion': r'= \([^)]*\) fusion\(',
}


def child(archs: list[str], batch: int) -> None:
    """Measure in this process (under the XLA_FLAGS it was started with); print JSON."""
    import time

    import jax.numpy as jnp
    import numpy as np

    from benchmarks import jax_side
    from jaxconv.cpu_runtime import configure
    from jaxconv.registry import min_image_size

    configure()
    out = {}
    for arch in archs:
        size = max(32, min_image_size(arch))
        x, y = jax_side.random_batch(batch, size)
        step = jax_side.train_step(jax_side.build_model(arch, size), jnp.asarray(x), jnp.asarray(y))
        hlo = step.executable.as_text()
        step.run()
        step.run()
        times = []
        for _ in range(5):
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.5 or n < 2:
                step.run()
                n += 1
            times.append((time.perf_counter() - t0) / n)
        out[arch] = {
            'img_s': batch / float(np.median(times)),
            'hlo': {k: len(re.findall(p, hlo)) for k, p in MARKERS.items()},
        }
    print(json.dumps(out))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', default='vgg11,resnet18,lenet')
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--json', help='write the results to this file')
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    archs = [a for a in args.arch.split(',') if a]
    if args.child:
        child(archs, args.batch_size)
        return {}
    results = {}
    for name, flags in TRIALS.items():
        env = {**os.environ, 'XLA_FLAGS': flags}
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                '--child',
                '--arch',
                args.arch,
                '--batch-size',
                str(args.batch_size),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            results[name] = {'flags': flags, 'error': proc.stderr.strip().splitlines()[-1:]}
            print(f'{name}: FAILED {results[name]["error"]}', flush=True)
            continue
        results[name] = {'flags': flags, **json.loads(proc.stdout.strip().splitlines()[-1])}
        cells = ', '.join(
            f'{a} {r["img_s"]:.0f} img/s {r["hlo"]}'
            for a, r in results[name].items()
            if a != 'flags'
        )
        print(f'{name}: {cells}', flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == '__main__':
    main()
