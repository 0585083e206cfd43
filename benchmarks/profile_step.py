"""Where a train step's time goes: jaxconv's slowest XLA ops beside the torch twin's aten ops.

    python benchmarks/profile_step.py --arch resnet18 [--batch-size 128] [--json out.json]
    python benchmarks/profile_step.py --arch lenet,densenet --top 15

``speed.py`` says how fast a step is; this says why. For each arch, in one process, it runs the
training loop's own step (``jaxconv.training.steps.make_train_step``, as ``speed.py`` builds it)
under ``jax.profiler`` and reads the trace back with ``jax.profiler.ProfileData`` (no
TensorBoard needed): every executed HLO instruction's CPU time per step (its own thread's and
the thread-pool tasks it scheduled, :func:`thunk_cpu_times`), joined with the optimised HLO
(opcode, shape, the JAX operation it came from). The torch twin (same weights, same batch,
``torch.optim.SGD``) runs under ``torch.profiler`` and gives each aten op's self time. Both sides
are grouped into the same kinds (convolution, matmul, pooling, normalisation statistics,
elementwise, copies) and passes (forward, backward, update), so a kind where jaxconv spends more
than torch is the place to work on.

The two sides time differently: a jaxconv op's time is CPU time summed over XLA's threads (the
executor runs independent ops side by side and splits ops into tasks), a torch op's is its
self time on the calling thread (its intra-op threads work inside it). So the kind and pass
tables share each side's op time out over its (unprofiled) step time: "ms of the step" spent
on each kind, comparable across the two. The op lists give each side's own measure.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxconv.cpu_runtime import configure

#: Instructions whose thunk only runs others (their children are counted on their own).
CONTAINER_OPCODES = frozenset({'while', 'conditional', 'call'})
#: Ops per side kept in the JSON (the kind and pass totals count every op).
JSON_OPS = 50
_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = (.*?) ([a-z][\w\-]*)\((.*)$')
_OP_NAME = re.compile(r'op_name="([^"]*)"')


# --------------------------------------------------------------------------------------------
# The optimised HLO: what each executed instruction is
# --------------------------------------------------------------------------------------------
_COMPUTATION = re.compile(r'^(?:ENTRY )?%([\w.\-]+) \(.*\{$')
_CALLS = re.compile(r'calls=%([\w.\-]+)')
_YNN_KIND = re.compile(r'"kind":"(__\w+)"')
_LOOP_KIND = re.compile(r'kind=(k\w+)')
#: Opcode -> kind, most telling first: a fusion is the kind of the first of these it holds.
_OPCODE_KINDS = (
    ('convolution', 'convolution'),
    ('dot', 'matmul'),
    ('reduce-window', 'pooling'),
    ('select-and-scatter', 'pooling'),
    ('reduce', 'reduction'),
    ('scatter', 'gather/slice/pad'),
    ('gather', 'gather/slice/pad'),
    ('pad', 'gather/slice/pad'),
    ('dynamic-slice', 'gather/slice/pad'),
    ('dynamic-update-slice', 'gather/slice/pad'),
    ('slice', 'gather/slice/pad'),
    ('concatenate', 'copy/layout'),
    ('transpose', 'copy/layout'),
    ('copy', 'copy/layout'),
)


def hlo_instructions(hlo_text: str) -> dict[str, dict]:
    """Instruction name -> opcode, result type, kind of work, source JAX op and fusion kind, over
    every computation of the module (a thunk is named after its instruction). A fusion takes
    the kind of what it fuses, and its source from its root when XLA gave it none."""
    table, members, current = {}, collections.defaultdict(list), None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            current = header.group(1)
            continue
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, opcode, rest = m.groups()
        op_name = _OP_NAME.search(rest)
        calls = _CALLS.search(rest) if opcode == 'fusion' else None
        kind = (_YNN_KIND.search(rest) or _LOOP_KIND.search(rest)) if opcode == 'fusion' else None
        info = {
            'opcode': opcode,
            'shape': shape.split('{')[0] if not shape.startswith('(') else shape[:60],
            'op_name': op_name.group(1) if op_name else '',
            'fusion_kind': kind.group(1) if kind else None,
            'calls': calls.group(1) if calls else None,
            'root': line.lstrip().startswith('ROOT '),
        }
        table[name] = info
        members[current].append(info)
    for info in table.values():
        fused = members.get(info.pop('calls'), []) if info['opcode'] == 'fusion' else [info]
        opcodes = {f['opcode'] for f in fused}
        info['work'] = next((k for op, k in _OPCODE_KINDS if op in opcodes), 'elementwise')
        if not info['op_name']:
            named = [f['op_name'] for f in sorted(fused, key=lambda f: not f['root'])]
            info['op_name'] = next((n for n in named if n), '')
    for info in table.values():
        info.pop('root', None)
    return table


def jax_pass(op_name: str) -> str:
    """forward / backward / update, from JAX's name stack (``jvp(`` marks the differentiated
    function, ``transpose(`` its backward); XLA-made ops without a source are 'unknown'."""
    if 'transpose(' in op_name:
        return 'backward'
    if 'jvp(' in op_name:
        return 'forward'
    return 'update' if op_name else 'unknown'


def thunk_cpu_times(lines) -> list[tuple[dict, float]]:
    """(stats, ns) of every executed thunk in the trace's thread ``lines`` (each a list of
    events with ``.start_ns``, ``.duration_ns``, ``.name``, ``.stats``); ``stats['hlo_op']``
    names the instruction and ``ns`` is its CPU time summed over threads.

    A thunk's event covers only the work its own thread did. The rest runs as thread-pool tasks:
    a ``ThreadpoolListener::Record`` event (flow id ``_p``) schedules a task that runs on some
    thread between ``ThreadpoolListener::StartRegion`` (the same id as ``_c``) and the next
    ``StopRegion``. XLA:CPU's Eigen dots, convolutions and partitioned loop fusions launch
    that way and return at once, so their events alone would hide their work. A task belongs
    to the thunk whose event encloses its Record, or, when a task scheduled it, to that task's
    thunk. Tasks that run thunks themselves (the executor's) are not counted again.
    """
    owner_of_record: dict = {}  # flow id -> ('op', index) | ('task', flow id) | None
    tasks = []  # (flow id, ns)
    executor_tasks = set()  # flow ids of tasks that ran a thunk
    ops = []  # (stats, ns)
    for events in lines:
        stack = []  # open ('op', index, end_ns) and ('task', flow id, start_ns)
        for event in sorted(events, key=lambda e: (e.start_ns, -e.duration_ns)):
            while stack and stack[-1][0] == 'op' and stack[-1][2] <= event.start_ns:
                stack.pop()
            stats = dict(event.stats)
            if stats.get('hlo_op'):
                executor_tasks.update(item[1] for item in stack if item[0] == 'task')
                ops.append((stats, event.duration_ns))
                stack.append(('op', len(ops) - 1, event.start_ns + event.duration_ns))
            elif event.name == 'ThreadpoolListener::Record' and '_p' in stats:
                owner = (stack[-1][0], stack[-1][1]) if stack else None
                owner_of_record[stats['_p']] = owner
            elif event.name == 'ThreadpoolListener::StartRegion' and '_c' in stats:
                stack.append(('task', stats['_c'], event.start_ns))
            elif event.name == 'ThreadpoolListener::StopRegion':
                while stack and stack[-1][0] == 'op':
                    stack.pop()
                if stack:
                    _, flow, begun = stack.pop()
                    tasks.append((flow, event.start_ns - begun))
    cpu = [ns for _, ns in ops]
    for flow, ns in tasks:
        owner, seen = owner_of_record.get(flow), set()
        while owner is not None and owner[0] == 'task' and owner[1] not in seen:
            seen.add(owner[1])
            owner = owner_of_record.get(owner[1])
        if owner is not None and owner[0] == 'op' and flow not in executor_tasks:
            cpu[owner[1]] += ns
    return [(stats, ns) for (stats, _), ns in zip(ops, cpu)]


def parse_jax_trace(trace_dir: str, hlo: dict[str, dict], steps: int) -> list[dict]:
    """Per-instruction time per step (ms) from the ``.xplane.pb`` the profiler wrote."""
    import jax

    files = glob.glob(f'{trace_dir}/**/*.xplane.pb', recursive=True)
    if not files:
        raise RuntimeError(f'jax.profiler wrote no .xplane.pb under {trace_dir}')
    data = jax.profiler.ProfileData.from_file(max(files))
    lines = [list(line.events) for plane in data.planes for line in plane.lines]
    total_ns: dict[str, float] = collections.Counter()
    calls: dict[str, int] = collections.Counter()
    for stats, ns in thunk_cpu_times(lines):
        name = stats['hlo_op']
        if stats.get('hlo_module', '').find('step') < 0:
            continue
        if hlo.get(name, {}).get('opcode') in CONTAINER_OPCODES:
            continue
        total_ns[name] += ns
        calls[name] += 1
    rows = []
    for name, ns in total_ns.items():
        info = hlo.get(
            name,
            {'opcode': '?', 'shape': '?', 'op_name': '', 'fusion_kind': None, 'work': '?'},
        )
        rows.append(
            {
                'op': name,
                'ms': ns / 1e6 / steps,
                'calls_per_step': calls[name] / steps,
                'kind': info['work'],
                'pass': jax_pass(info['op_name']),
                **{k: v for k, v in info.items() if k != 'work'},
            }
        )
    return sorted(rows, key=lambda r: -r['ms'])


# --------------------------------------------------------------------------------------------
# The torch twin: aten ops
# --------------------------------------------------------------------------------------------
_TORCH_KINDS = (
    ('convolution', ('conv', 'mkldnn_convolution')),
    ('matmul', ('addmm', 'aten::mm', 'bmm', 'matmul', 'linear')),
    ('pooling', ('pool',)),
    ('normalisation', ('batch_norm',)),
    ('copy/layout', ('copy_', 'contiguous', 'clone', 'to_dense', 'transpose', 'permute')),
    ('update', ('_foreach', 'sgd')),
    ('reduction', ('sum', 'mean', 'var', 'std', 'log_softmax', 'nll_loss')),
)


def torch_kind(name: str) -> str:
    for kind, needles in _TORCH_KINDS:
        if any(n in name for n in needles):
            return kind
    return 'elementwise'


def torch_pass(name: str) -> str:
    if 'backward' in name.lower():
        return 'backward'
    return 'update' if '_foreach' in name or 'sgd' in name.lower() else 'forward'


def torch_profile(step, steps: int) -> list[dict]:
    """Self CPU time per step (ms) of each aten op over ``steps`` profiled steps."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = []
    for avg in prof.key_averages():
        ms = avg.self_cpu_time_total / 1e3 / steps
        if ms <= 0 or not avg.key.startswith('aten::'):
            continue
        rows.append(
            {
                'op': avg.key,
                'ms': ms,
                'calls_per_step': avg.count / steps,
                'kind': torch_kind(avg.key),
                'pass': torch_pass(avg.key),
            }
        )
    return sorted(rows, key=lambda r: -r['ms'])


# --------------------------------------------------------------------------------------------
# One arch
# --------------------------------------------------------------------------------------------
def median_step_ms(run, repeats: int = 9) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def by(rows: list[dict], key: str, step_ms: float) -> dict[str, float]:
    """Milliseconds of the step per ``key`` (kind or pass): the op time of each, as a share of
    all op time, times the step's wall time."""
    out: dict[str, float] = collections.Counter()
    total = sum(r['ms'] for r in rows) or 1.0
    for r in rows:
        out[r[key]] += r['ms'] * step_ms / total
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def profile_arch(arch: str, image_size: int, batch: int, steps: int, torch_variant: str) -> dict:
    import jax
    import jax.numpy as jnp

    from benchmarks import jax_side, torch_side

    model = jax_side.build_model(arch, image_size)
    x, y = jax_side.random_batch(batch, image_size)
    xj, yj = jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(y))
    step = jax_side.train_step(model, xj, yj)
    for _ in range(3):
        step.run()
    jax_ms = median_step_ms(step.run)
    hlo = hlo_instructions(step.executable.as_text())
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        for _ in range(steps):
            step.run()
        jax.profiler.stop_trace()
        jax_rows = parse_jax_trace(trace_dir, hlo, steps)

    twin = torch_side.torch_twin(arch, model, image_size)
    tstep = torch_side.train_step(
        twin,
        x,
        y,
        torch_variant,
        lr=jax_side.LEARNING_RATE,
        momentum=jax_side.MOMENTUM,
    )
    for _ in range(5):
        tstep.run()
    torch_ms = median_step_ms(tstep.run)
    torch_rows = torch_profile(tstep.run, steps)
    return {
        'arch': arch,
        'image_size': image_size,
        'batch_size': batch,
        'profiled_steps': steps,
        'jaxconv': {
            'step_ms': jax_ms,
            'op_ms_sum': sum(r['ms'] for r in jax_rows),
            'by_kind': by(jax_rows, 'kind', jax_ms),
            'by_pass': by(jax_rows, 'pass', jax_ms),
            'ops': jax_rows,
        },
        f'torch_{torch_variant}': {
            'step_ms': torch_ms,
            'op_ms_sum': sum(r['ms'] for r in torch_rows),
            'by_kind': by(torch_rows, 'kind', torch_ms),
            'by_pass': by(torch_rows, 'pass', torch_ms),
            'ops': torch_rows,
        },
    }


def short_source(op_name: str, width: int = 58) -> str:
    """The name stack without the ``jit(step)/`` prefix, cut from the left to ``width``."""
    s = op_name.removeprefix('jit(step)/')
    return s if len(s) <= width else '…' + s[-(width - 1) :]


def report(record: dict, top: int) -> str:
    jx = record['jaxconv']
    tname = next(k for k in record if k.startswith('torch_'))
    tt = record[tname]
    out = [
        f'== {record["arch"]}: batch {record["batch_size"]}, {record["image_size"]}², '
        f'{record["profiled_steps"]} profiled steps',
        f'   step: jaxconv {jx["step_ms"]:.1f} ms, {tname} {tt["step_ms"]:.1f} ms '
        f'(ratio {tt["step_ms"] / jx["step_ms"]:.2f}); op time summed: jaxconv '
        f'{jx["op_ms_sum"]:.1f} CPU ms (all threads), torch {tt["op_ms_sum"]:.1f} ms',
        "   ms of the step per kind (each side's op time shared out over its step time):",
        f'   {"kind":<18}{"jaxconv ms":>11}{"torch ms":>10}{"jax - torch":>12}',
    ]
    kinds = sorted(
        set(jx['by_kind']) | set(tt['by_kind']),
        key=lambda k: -(jx['by_kind'].get(k, 0) - tt['by_kind'].get(k, 0)),
    )
    for k in kinds:
        a, b = jx['by_kind'].get(k, 0.0), tt['by_kind'].get(k, 0.0)
        out.append(f'   {k:<18}{a:>11.1f}{b:>10.1f}{a - b:>+12.1f}')
    out.append(
        '   by pass: jaxconv '
        + ', '.join(f'{k} {v:.1f}' for k, v in jx['by_pass'].items())
        + ' | torch '
        + ', '.join(f'{k} {v:.1f}' for k, v in tt['by_pass'].items())
    )
    out.append(f'   jaxconv, slowest {top} ops (CPU ms/step over all threads, % of op time):')
    for r in jx['ops'][:top]:
        pct = 100 * r['ms'] / jx['op_ms_sum']
        label = r['opcode'] + (f'[{r["fusion_kind"]}]' if r['fusion_kind'] else '')
        out.append(
            f'   {r["ms"]:7.2f} {pct:5.1f}%  {r["kind"]:<12} {r["pass"]:<8} {label:<22} '
            f'{r["shape"]:<22} {short_source(r["op_name"])}'
        )
    out.append(f'   {tname}, slowest {top} aten ops (self ms/step):')
    for r in tt['ops'][:top]:
        pct = 100 * r['ms'] / tt['op_ms_sum']
        out.append(
            f'   {r["ms"]:7.2f} {pct:5.1f}%  {r["kind"]:<12} {r["pass"]:<8} {r["op"]} '
            f'(×{r["calls_per_step"]:g})'
        )
    return '\n'.join(out)


def _trimmed(record: dict, n: int) -> dict:
    """``record`` with each side's op list cut to its ``n`` slowest (the totals keep them all)."""
    return {
        k: {
            **v,
            'ops': v['ops'][:n],
            'ops_listed': min(n, len(v['ops'])),
            'ops_total': len(v['ops']),
        }
        if isinstance(v, dict) and 'ops' in v
        else v
        for k, v in record.items()
    }


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument('--arch', required=True, help="a registered model, a comma list, or 'all'")
    ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--image-size', action='append', default=[], help='32, or ARCH=SIZE')
    ap.add_argument('--steps', type=int, default=5, help='profiled steps per side')
    ap.add_argument('--top', type=int, default=12, help='ops listed per side')
    ap.add_argument('--torch-variant', choices=('eager', 'channels_last'), default='eager')
    ap.add_argument('--json', help='write every op of every arch to this file')
    return ap.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    applied = configure()
    import jax
    import torch

    from benchmarks.speed import parse_image_sizes, resolve_image_size, select_archs
    from jaxconv import conv_autotune, conv_lowering

    archs, _ = select_archs(args.arch, include_tv=False)
    default_size, per_arch = parse_image_sizes(args.image_size)
    meta = {
        'command': ' '.join(['profile_step.py', *(argv if argv is not None else sys.argv[1:])]),
        'jax': jax.__version__,
        'torch': torch.__version__,
        'cpu_model': conv_autotune.cpu_model(),
        'cpu_isa': conv_autotune.cpu_isa(),
        'conv_lowering_mode': conv_lowering.mode(),
        'torch_threads': torch.get_num_threads(),
        'cpu_runtime': applied,
    }
    print(
        f'cpu: {meta["cpu_model"]} ({meta["cpu_isa"]}); conv lowering: '
        f'{meta["conv_lowering_mode"]}; torch threads {meta["torch_threads"]}',
        flush=True,
    )
    records = []
    for arch in archs:
        size, _ = resolve_image_size(arch, default_size, per_arch)
        record = profile_arch(arch, size, args.batch_size, args.steps, args.torch_variant)
        records.append(record)
        print(report(record, args.top), flush=True)
        if args.json:
            saved = [_trimmed(r, max(args.top, JSON_OPS)) for r in records]
            Path(args.json).write_text(json.dumps({'meta': meta, 'archs': saved}, indent=1))
    return records


if __name__ == '__main__':
    main()
