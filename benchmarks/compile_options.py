"""An XLA compiler option A/B'd in one process: the train step compiled with and without it.

    python benchmarks/compile_options.py --arch alexnet,resnet18 \
        --option xla_cpu_copy_insertion_use_region_analysis=true [--batch-size 32]

``xla_flags.py`` needs a fresh process per ``XLA_FLAGS`` trial, so its trials run one after
another and the machine's drift between them is in the comparison. An option that is a field of
XLA's ``DebugOptions`` can instead be given to one compile (``Lowered.compile(
compiler_options=...)``), so here every variant lives in the same process and is timed
interleaved with the others (``timing.time_interleaved``), with the baseline compiled twice as
the null control. For each variant it also reports:

* ``state_copies``: how many ``copy`` instructions of the donated train state the optimised HLO
  holds (XLA copies a donated buffer when it cannot prove that every read of the old value
  comes before the write of the new one);
* ``same_as_baseline``: whether three steps from the same initial state give bit-identical
  states and losses (an option that changes numbers changes parity).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure

#: Steps run from the initial state before timing, to compare the variants' numbers.
CHECK_STEPS = 3
_STATE_COPY = re.compile(r'= \S+ copy\(%state_')


def parse_option(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` -> (NAME, bool, int or str VALUE), as ``compiler_options`` takes them."""
    name, sep, value = text.partition('=')
    if not sep or not re.fullmatch(r'xla_\w+', name):
        raise SystemExit(f'--option {text!r}: expected xla_NAME=VALUE (a DebugOptions field)')
    if value.lower() in ('true', 'false'):
        return name, value.lower() == 'true'
    return name, int(value) if value.lstrip('-').isdigit() else value


def state_copies(hlo_text: str) -> int:
    return len(_STATE_COPY.findall(hlo_text))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', default='alexnet,resnet18')
    ap.add_argument('--option', action='append', required=True, metavar='NAME=VALUE')
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--image-size', type=int, default=32, help="raised to an arch's minimum")
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--json', help='write the results to this file')
    args = ap.parse_args(argv)
    options = dict(parse_option(o) for o in args.option)
    configure()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks import jax_side
    from benchmarks.timing import Variant, time_interleaved
    from jaxconv import conv_autotune
    from jaxconv.registry import min_image_size

    label = ','.join(args.option)
    variants = (('baseline', None), ('baseline (again)', None), (label, options))
    results = {
        'meta': {
            'command': ' '.join(['compile_options.py', *(argv or sys.argv[1:])]),
            'cpu_model': conv_autotune.cpu_model(),
            'cpu_isa': conv_autotune.cpu_isa(),
            'jax': jax.__version__,
            'batch_size': args.batch_size,
        },
        'archs': {},
    }
    print(f'cpu: {results["meta"]["cpu_model"]} ({results["meta"]["cpu_isa"]})', flush=True)
    for arch in args.arch.split(','):
        size = max(args.image_size, min_image_size(arch))
        x, y = jax_side.random_batch(args.batch_size, size)
        x, y = jnp.asarray(x), jnp.asarray(y)
        timed, record, reference = [], {}, None
        for name, opts in variants:
            step = jax_side.train_step(
                jax_side.build_model(arch, size), x, y, compiler_options=opts
            )
            losses = [float(step.run()) for _ in range(CHECK_STEPS)]
            numbers = [np.asarray(a) for a in jax.tree.leaves(step.state[0])] + [losses]
            reference = numbers if reference is None else reference
            same = all(np.array_equal(a, b) for a, b in zip(reference, numbers))
            record[name] = {
                'state_copies': state_copies(step.executable.as_text()),
                'same_as_baseline': bool(same),
                'compile_s': step.compile_s,
            }
            timed.append(Variant(name, step.run, args.batch_size))
        time_interleaved(timed, args.repeats)
        for v in timed:
            record[v.name].update(images_per_s=v.images_per_s, spread=v.spread, error=v.error)
        base = record['baseline']['images_per_s']
        print(
            f'{arch} ({size}², batch {args.batch_size}): '
            + '; '.join(
                f'{n} {r["images_per_s"]:.0f} img/s ({r["images_per_s"] / base:.3f}, spread '
                f'{r["spread"]:.2f}), {r["state_copies"]} state copies'
                + ('' if r['same_as_baseline'] else ', NUMBERS DIFFER')
                for n, r in record.items()
            ),
            flush=True,
        )
        results['archs'][arch] = record
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == '__main__':
    main()
