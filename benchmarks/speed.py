"""jaxconv against its PyTorch twin: training and inference throughput, same machine, same run.

    python benchmarks/speed.py --arch vgg11 [--batch-size 128] [--image-size 32] [--json out.json]
    python benchmarks/speed.py --arch all --json out.json          # every course arch
    python benchmarks/speed.py --arch alexnet --image-size alexnet=224

For each arch, in one process: jaxconv's train step (the training loop's own,
``jaxconv.training.steps.make_train_step``: cross-entropy, gradients, SGD-momentum update
through ``jaxconv.optim.torch_sgd``; train mode) and eval-mode forward, against the
torch twin (``parity.torch_model``, weights copied across) with ``torch.optim.SGD`` in eager
NCHW, eager channels_last and ``torch.compile`` (skipped with a note where it fails). The
variants are timed interleaved (one run of each in turn, ``--repeats`` rounds, median reported)
after warm-up, so a burst of load from other processes hits them alike; compile times are
reported separately. FLOPs are counted from the layer shapes (``benchmarks/flops.py``) and set
against XLA's measured float32 matmul rate. The training data pipeline alone
(``jaxconv.data.epoch_batches`` + the host-to-device copy) is timed once and compared with each
train-step rate. On a GPU machine the same command also reports torch.compile with TF32 on,
and jaxconv at 'highest' matmul precision.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure

MIN_VALID_REPEATS = 7
DEFAULT_IMAGE_SIZE = 32


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------
def parse_image_sizes(values: list[str]) -> tuple[int | None, dict[str, int]]:
    """``--image-size 32`` (every arch) and/or ``--image-size alexnet=224`` (one arch)."""
    default, per_arch = None, {}
    for value in values:
        for item in value.split(','):
            if '=' in item:
                name, size = item.split('=', 1)
                per_arch[name.strip()] = int(size)
            else:
                default = int(item)
    return default, per_arch


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', default='vgg11', help="a registered model, a comma list, or 'all'")
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument(
        '--image-size',
        action='append',
        default=[],
        help='SIZE for every arch and/or ARCH=SIZE for one (repeatable); archs '
        'whose minimum exceeds 32 default to that minimum',
    )
    ap.add_argument(
        '--repeats',
        type=int,
        default=MIN_VALID_REPEATS,
        help=f'timed runs per variant (>= {MIN_VALID_REPEATS} for a valid figure)',
    )
    ap.add_argument('--warmup', type=int, default=2, help='untimed steps before timing')
    ap.add_argument(
        '--min-run-s',
        type=float,
        default=0.3,
        help='a timed run repeats the step until it lasts at least this long',
    )
    ap.add_argument('--no-compile', action='store_true', help='skip the torch.compile variant')
    ap.add_argument('--no-forward', action='store_true', help='time the train step only')
    ap.add_argument(
        '--include-tv',
        action='store_true',
        help='with --arch all, also run the torchvision (tv_*) models',
    )
    ap.add_argument(
        '--threads',
        type=int,
        default=os.cpu_count(),
        help='torch intra-op threads (XLA uses one thread per core)',
    )
    ap.add_argument(
        '--no-cold',
        action='store_true',
        help='skip first_step_cold_s (the first step in a fresh process with an '
        'empty autotuning cache)',
    )
    ap.add_argument('--json', help='write the figures to this file')
    return ap.parse_args(argv)


# --------------------------------------------------------------------------------------------
# One arch
# --------------------------------------------------------------------------------------------
def resolve_image_size(arch: str, default: int | None, per_arch: dict[str, int]) -> tuple[int, str]:
    """The input size for ``arch`` and why: an override, the default, or the arch's minimum."""
    from jaxconv.registry import min_image_size

    if arch in per_arch:
        return per_arch[arch], 'set with --image-size'
    size = default or DEFAULT_IMAGE_SIZE
    minimum = min_image_size(arch)
    if size >= minimum:
        return size, 'default' if default is None else 'set with --image-size'
    return minimum, f'the minimum for this arch ({size} is too small)'


def first_step_cold(arch: str, image_size: int, batch: int) -> dict:
    """``first_step.py`` in a fresh process with an empty autotuning cache."""
    import subprocess
    import tempfile

    from jaxconv.conv_autotune import CACHE_ENV

    with tempfile.TemporaryDirectory() as empty:
        env = {**os.environ, CACHE_ENV: empty}
        proc = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name('first_step.py')),
                '--arch',
                arch,
                '--batch-size',
                str(batch),
                '--image-size',
                str(image_size),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
    if proc.returncode != 0:
        return {'error': proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


KINDS = ('train', 'forward')


def _jax_variants(kind: str, build, precisions, batch: int) -> list[tuple[str, object, dict]]:
    """(name, timing variant, compile figures) of the compiled jaxconv step ``build()`` per
    matmul precision ('default' is named 'jaxconv')."""
    import jax

    from benchmarks.timing import Variant

    out = []
    for precision in precisions:
        name = 'jaxconv' if precision == 'default' else f'jaxconv_{precision}'
        with jax.default_matmul_precision(None if precision == 'default' else precision):
            step = build()
        out.append(
            (
                name,
                Variant(name, step.run, batch),
                {
                    f'{kind}_compile_s': step.compile_s,
                    f'{kind}_xla_temp_bytes': step.temp_bytes,
                    f'{kind}_xla_flops_per_image': step.xla_flops / batch
                    if step.xla_flops
                    else None,
                },
            )
        )
    return out


def _torch_variant(
    kind: str, variant: str, arch: str, model, x, y, image_size: int, device: str, batch: int
) -> tuple[str, object | None, dict]:
    """(name, timing variant or None, figures) of one torch variant; a variant that cannot be
    built (e.g. no C compiler for torch.compile) gives None and its error."""
    from benchmarks import jax_side, torch_side
    from benchmarks.timing import Variant

    name = f'torch_{variant}'
    try:
        twin = torch_side.torch_twin(arch, model, image_size, device=device)
        step = (
            torch_side.train_step(
                twin,
                x,
                y,
                variant,
                lr=jax_side.LEARNING_RATE,
                momentum=jax_side.MOMENTUM,
                device=device,
            )
            if kind == 'train'
            else torch_side.forward_step(twin, x, variant, device=device)
        )
    except Exception as error:  # noqa: BLE001 - e.g. no C compiler for torch.compile
        return (
            name,
            None,
            {f'{kind}_error': f'{type(error).__name__}: {error}'.splitlines()[0][:300]},
        )
    figures = {} if step.compile_s is None else {f'{kind}_compile_s': step.compile_s}
    return name, Variant(name, step.run, batch), figures


def _conv_plans(calls) -> dict[str, int]:
    """How many convs (each once, forward and backward together) took each lowering plan."""
    plans: dict[str, int] = {}
    for call in {c.key: c for c in calls}.values():
        plans[str(call.plan)] = plans.get(str(call.plan), 0) + 1
    return plans


def _timing_figures(kind: str, v, per_image_flops: float, matmul_peak: float) -> dict:
    if v.error:
        return {f'{kind}_error': v.error}
    gflop_s = per_image_flops * v.images_per_s / 1e9
    return {
        f'{kind}_img_s': v.images_per_s,
        f'{kind}_spread': v.spread,
        f'{kind}_runs': len(v.times),
        f'{kind}_steps_per_run': v.steps_per_run,
        f'{kind}_peak_rss_extra_bytes': v.peak_extra_bytes,
        f'{kind}_gflop_s': gflop_s,
        f'{kind}_matmul_fraction': gflop_s / matmul_peak,
    }


def measure_arch(arch: str, image_size: int, args, device: str, matmul_peak: float) -> dict:
    """Time jaxconv's train step (the training loop's) and forward against the torch variants,
    interleaved per kind; the record holds each variant's figures under 'variants'."""
    import jax
    import jax.numpy as jnp

    from benchmarks import jax_side, torch_side
    from benchmarks.flops import layer_shapes
    from benchmarks.timing import time_interleaved
    from jaxconv import conv_autotune, conv_lowering

    b = args.batch_size
    macs = sum(layer.macs for layer in layer_shapes(arch, image_size, b)) / b
    flops = {'forward': 2.0 * macs, 'train': 6.0 * macs}
    cold = None if args.no_cold else first_step_cold(arch, image_size, b)

    model = jax_side.build_model(arch, image_size)
    x, y = jax_side.random_batch(b, image_size)
    xj, yj = jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))
    gpu = device != 'cpu'
    precisions = ('default', 'highest') if gpu else ('default',)
    torch_names = [
        v
        for v in (*torch_side.VARIANTS, *(torch_side.GPU_VARIANTS if gpu else ()))
        if not (args.no_compile and v.startswith('compile'))
    ]
    builds = {
        'train': lambda: jax_side.train_step(model, xj, yj),
        'forward': lambda: jax_side.forward_step(model, xj),
    }

    record = {
        'arch': arch,
        'image_size': image_size,
        'batch_size': b,
        'fwd_gflop_per_image': flops['forward'] / 1e9,
        'train_gflop_per_image': flops['train'] / 1e9,
        'variants': {},
        'notes': [],
    }
    entries = record['variants']
    for kind in ('train',) if args.no_forward else KINDS:
        tuned_before = conv_autotune.STATS.seconds
        with conv_lowering.recording() as calls:
            built = _jax_variants(kind, builds[kind], precisions, b)
        if kind == 'train':
            record['conv_plans'] = _conv_plans(calls)
            record['autotune_s'] = conv_autotune.STATS.seconds - tuned_before
        built += [
            _torch_variant(kind, v, arch, model, x, y, image_size, device, b) for v in torch_names
        ]
        for name, _, figures in built:
            entries.setdefault(name, {}).update(figures)
        variants = [variant for _, variant, _ in built if variant is not None]
        if kind == 'train':
            record['first_step_s'] = entries['jaxconv']['train_compile_s']
            record['first_step_cold_s'] = (cold or {}).get('first_step_s')
            record['first_step_cold_autotune_s'] = (cold or {}).get('autotune_s')
        time_interleaved(variants, args.repeats, warmup=args.warmup, min_run_s=args.min_run_s)
        for v in variants:
            entries[v.name].update(_timing_figures(kind, v, flops[kind], matmul_peak))
        del variants, built
        if gpu:  # jax keeps one process-wide high-water mark: report it as of this kind
            stats = jax.devices()[0].memory_stats() or {}
            if 'peak_bytes_in_use' in stats:
                entries['jaxconv'][f'{kind}_device_peak_bytes_so_far'] = stats['peak_bytes_in_use']
    return record


def report_arch(record: dict, matmul_peak: float) -> dict:
    """Add the comparisons to a ``measure_arch`` record: jaxconv's rate per kind against the
    best torch variant's, and the train step's share of the matmul peak."""
    for kind in KINDS:
        if f'{kind}_compile_s' not in record['variants']['jaxconv']:
            continue  # not measured (--no-forward)
        jax_rate = record['variants']['jaxconv'].get(f'{kind}_img_s')
        torch_rates = {
            n: e[f'{kind}_img_s']
            for n, e in record['variants'].items()
            if n.startswith('torch_') and f'{kind}_img_s' in e
        }
        best = max(torch_rates, key=torch_rates.get) if torch_rates else None
        record[f'jax_{kind}_img_s'] = jax_rate
        record[f'torch_best_{kind}_img_s'] = torch_rates.get(best)
        record[f'torch_best_{kind}_variant'] = best
        record[f'ratio_{kind}'] = jax_rate / torch_rates[best] if jax_rate and best else None
    train_rate = record.get('jax_train_img_s')
    record['jax_train_matmul_fraction'] = (
        record['train_gflop_per_image'] * train_rate / matmul_peak if train_rate else None
    )
    return record


# --------------------------------------------------------------------------------------------
# Machine-level figures
# --------------------------------------------------------------------------------------------
def torch_matmul_gflops(device: str, n: int = 2048, repeats: int = 7) -> float:
    import statistics

    import torch

    a = torch.randn(n, n, device=device)
    (a @ a).sum().item()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        (a @ a).sum().item() if device != 'cpu' else a @ a
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def data_pipeline_rate(batch_size: int, batches: int = 200, image_size: int = 32) -> dict:
    """Batches/s of ``epoch_batches`` on a CIFAR-10-sized uint8 array plus ``device_put``.

    The images stay 32×32 uint8 on the host whatever the model's input size: conversion,
    resizing and normalisation run inside the jitted step (``jaxconv.data.preprocess``).
    """
    import jax
    import numpy as np

    from jaxconv.data import epoch_batches

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50_000, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 50_000).astype(np.int32)
    steps = min(batches, 50_000 // batch_size)
    t0 = time.perf_counter()
    count = 0
    for x, y in epoch_batches(images, labels, batch_size, seed=0, epoch=0):
        jax.block_until_ready(jax.device_put((x, y)))
        count += 1
        if count == steps:
            break
    elapsed = time.perf_counter() - t0
    return {'batches_per_s': count / elapsed, 'batches': count, 'image_shape': [image_size] * 2}


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def _fmt(value, spec='.1f', missing='-'):
    return missing if value is None else format(value, spec)


def arch_table(r: dict, pipeline_rate: float | None) -> str:
    lines = [
        f'\n== {r["arch"]}: batch {r["batch_size"]}, {r["image_size"]}x{r["image_size"]} '
        f'({r["image_size_reason"]}); {r["fwd_gflop_per_image"]:.3f} GFLOP/img forward, '
        f'{r["train_gflop_per_image"]:.3f} train (counted from layer shapes); '
        f'measured in {r.get("wall_s", 0):.0f} s'
    ]
    if r.get('conv_plans'):
        lines.append(
            '   conv lowering (fwd/dx/dW: convs): '
            + ', '.join(f'{k}: {v}' for k, v in r['conv_plans'].items())
        )
    lines.append(
        f'   first train step (trace, autotune, compile): {_fmt(r.get("first_step_s"))} s'
        f' (autotune {_fmt(r.get("autotune_s"))} s); with an empty cache '
        f'{_fmt(r.get("first_step_cold_s"))} s (autotune '
        f'{_fmt(r.get("first_step_cold_autotune_s"))} s)'
    )
    lines.append(
        f'   {"variant":<22}{"train img/s":>12}{"fwd img/s":>11}{"train GF/s":>11}'
        f'{"%matmul":>8}{"compile s":>14}{"mem MB":>9}{"spread":>8}'
    )
    for name, e in r['variants'].items():
        compile_s = '/'.join(_fmt(e.get(f'{k}_compile_s'), '.1f') for k in ('train', 'forward'))
        mem = (
            e.get('train_device_peak_bytes_so_far')
            or e.get('train_xla_temp_bytes')
            or e.get('train_peak_rss_extra_bytes')
        )
        frac = e.get('train_matmul_fraction')
        lines.append(
            f'   {name:<22}{_fmt(e.get("train_img_s")):>12}'
            f'{_fmt(e.get("forward_img_s")):>11}{_fmt(e.get("train_gflop_s")):>11}'
            f'{_fmt(frac and 100 * frac, ".0f"):>8}{compile_s:>14}'
            f'{_fmt(mem and mem / 2**20, ".0f"):>9}{_fmt(e.get("train_spread"), ".2f"):>8}'
        )
        for k in ('train', 'forward'):
            if e.get(f'{k}_error'):
                lines.append(f'      {k} skipped: {e[f"{k}_error"]}')
    lines.append(
        f'   jaxconv / best torch: train {_fmt(r.get("ratio_train"), ".2f")}x '
        f'(vs {r.get("torch_best_train_variant")}), forward '
        f'{_fmt(r.get("ratio_forward"), ".2f")}x (vs {r.get("torch_best_forward_variant")})'
    )
    if pipeline_rate and r.get('jax_train_img_s'):
        r['data_pipeline_vs_train_steps'] = pipeline_rate / (r['jax_train_img_s'] / r['batch_size'])
        lines.append(
            f'   data pipeline: {r["data_pipeline_vs_train_steps"]:.0f}x the train-step rate'
        )
    return '\n'.join(lines)


def summary_table(results: dict) -> str:
    lines = [
        '\n== summary (img/s; ratio = jaxconv / best torch variant)',
        f'{"arch":<14}{"size":>5}{"jax train":>10}{"torch best":>11}{"ratio":>7}'
        f'{"jax fwd":>9}{"torch best":>11}{"ratio":>7}{"%matmul":>8}',
    ]
    for arch, r in results.items():
        if 'error' in r:
            lines.append(f'{arch:<14} failed: {r["error"]}')
            continue
        frac = r.get('jax_train_matmul_fraction')
        lines.append(
            f'{arch:<14}{r["image_size"]:>5}{_fmt(r.get("jax_train_img_s")):>10}'
            f'{_fmt(r.get("torch_best_train_img_s")):>11}{_fmt(r.get("ratio_train"), ".2f"):>7}'
            f'{_fmt(r.get("jax_forward_img_s")):>9}{_fmt(r.get("torch_best_forward_img_s")):>11}'
            f'{_fmt(r.get("ratio_forward"), ".2f"):>7}{_fmt(frac and 100 * frac, ".0f"):>8}'
        )
    return '\n'.join(lines)


# --------------------------------------------------------------------------------------------
def select_archs(spec: str, include_tv: bool) -> tuple[list[str], list[str]]:
    from jaxconv.models import list_models

    names = list_models()
    if spec != 'all':
        wanted = [a.strip() for a in spec.split(',') if a.strip()]
        unknown = [a for a in wanted if a not in names]
        if unknown:
            raise SystemExit(f'unknown arch {unknown}; choose from: {", ".join(names)} or all')
        return wanted, []
    skipped = [] if include_tv else [a for a in names if a.startswith('tv_')]
    return [a for a in names if a not in skipped], skipped


def main(argv=None) -> dict:
    args = parse_args(argv)
    applied = configure()
    import jax
    import torch

    from benchmarks.jax_side import matmul_gflops
    from jaxconv import conv_autotune, conv_lowering

    torch.set_num_threads(args.threads)
    gpu = jax.default_backend() == 'gpu' and torch.cuda.is_available()
    device = 'cuda' if gpu else 'cpu'
    if gpu:  # parity-grade torch by default; 'compile_tf32' turns TF32 on for its own variant
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.repeats < MIN_VALID_REPEATS:
        print(
            f'note: --repeats {args.repeats} < {MIN_VALID_REPEATS}: a smoke run, not a measurement',
            flush=True,
        )
    archs, skipped = select_archs(args.arch, args.include_tv)
    default_size, per_arch = parse_image_sizes(args.image_size)

    t_start = time.perf_counter()
    peak = {'jax': matmul_gflops(), 'torch': torch_matmul_gflops(device)}
    pipeline = data_pipeline_rate(args.batch_size)
    meta = {
        'command': ' '.join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        'jax': jax.__version__,
        'torch': torch.__version__,
        'device': device,
        'jax_devices': [str(d) for d in jax.devices()],
        'cpu_count': os.cpu_count(),
        'torch_threads': torch.get_num_threads(),
        'platform': platform.platform(),
        'cpu_runtime': applied,
        'xla_flags': os.environ.get('XLA_FLAGS', ''),
        'matmul_gflops_2048': peak,
        'data_pipeline': pipeline,
        'flops_source': 'counted from layer shapes: conv/linear MACs x2 (forward), x6 (train)',
        'memory_note': (
            'jaxconv: XLA temp buffers of the compiled step (memory_analysis); '
            'torch: sampled process RSS growth during its runs'
        ),
        'skipped_archs': {a: 'torchvision model; pass --include-tv' for a in skipped},
        'cpu_model': conv_autotune.cpu_model(),
        'cpu_isa': conv_autotune.cpu_isa(),
        'conv_lowering_mode': conv_lowering.mode(),
        'autotune_cache': str(conv_autotune.cache_file()),
    }
    print(
        f'cpu: {meta["cpu_model"]} ({meta["cpu_isa"]}); conv lowering: '
        f'{meta["conv_lowering_mode"]} (cache {meta["autotune_cache"]})',
        flush=True,
    )
    print(
        f'devices: jax {meta["jax_devices"]}, torch {device} ({meta["torch_threads"]} threads); '
        f'matmul 2048^2 f32: jax {peak["jax"]:.0f} GFLOP/s, torch {peak["torch"]:.0f}; '
        f'data pipeline {pipeline["batches_per_s"]:.0f} batches/s; runtime {applied}',
        flush=True,
    )
    for name, why in meta['skipped_archs'].items():
        print(f'skipped {name}: {why}')

    results = {}
    for arch in archs:
        t0 = time.perf_counter()
        try:
            size, why = resolve_image_size(arch, default_size, per_arch)
            record = report_arch(measure_arch(arch, size, args, device, peak['jax']), peak['jax'])
            record['image_size_reason'] = why
            record['wall_s'] = time.perf_counter() - t0
            print(arch_table(record, pipeline['batches_per_s']), flush=True)
        except Exception as error:  # noqa: BLE001 - one failing arch must not sink the run
            record = {'arch': arch, 'error': f'{type(error).__name__}: {error}'.splitlines()[0]}
            print(f'\n== {arch}: FAILED {record["error"]}', flush=True)
        results[arch] = record
    meta['wall_s'] = time.perf_counter() - t_start
    print(summary_table(results))
    print(f'total {meta["wall_s"]:.0f} s')

    out = {'meta': meta, 'archs': results}
    if len(results) == 1:  # one arch: its figures at the top level too
        out.update({k: v for k, v in next(iter(results.values())).items() if k != 'variants'})
        out['variants'] = next(iter(results.values())).get('variants')
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == '__main__':
    main()
