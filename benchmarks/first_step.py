"""The first train step of one arch in a fresh process: trace, autotune and compile, in seconds.

    python benchmarks/first_step.py --arch vgg11 [--batch-size 128] [--image-size 32]

``speed.py`` runs it with ``$JAXCONV_CACHE_DIR`` pointing at an empty directory to report
``first_step_cold_s`` (what a new user's first step costs), beside ``first_step_s`` measured
in its own process with the cache as it found it. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', required=True)
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--image-size', type=int, default=32)
    args = ap.parse_args(argv)
    configure()
    import jax.numpy as jnp

    from benchmarks import jax_side
    from jaxconv import conv_autotune

    model = jax_side.build_model(args.arch, args.image_size)
    x, y = jax_side.random_batch(args.batch_size, args.image_size)
    t0 = time.perf_counter()
    step = jax_side.train_step(model, jnp.asarray(x), jnp.asarray(y))
    step.run()
    out = {
        'arch': args.arch,
        'first_step_s': time.perf_counter() - t0,
        'autotune_s': conv_autotune.STATS.seconds,
        'tuned': conv_autotune.STATS.tuned,
        'cached': conv_autotune.STATS.cached,
    }
    print(json.dumps(out))
    return out


if __name__ == '__main__':
    main()
