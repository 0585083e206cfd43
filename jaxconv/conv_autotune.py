"""Autotuned convolution lowering: time every candidate on this machine, keep the fastest.

Why: which lowering of a convolution pass is fastest depends on the CPU (vector width, cache
sizes), and a rule with thresholds set on one machine picks badly on another. So, as cuDNN's
benchmark mode does, the first time a convolution of a given shape, geometry, dtype and backend
is traced, each pass (forward, dx, dW) is timed with every candidate lowering
(:func:`candidates`) on random data of that shape, and the fastest is kept.

The winners are kept in a human-readable JSON file per machine (CPU model, ISA, jaxlib
version), in ``$JAXCONV_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxconv``, else
``~/.cache/jaxconv``; a later process reads them instead of measuring again. Delete the file to
re-measure. The measuring runs in a worker thread: JAX's trace state is per thread, so the
candidates really execute while the caller's function is being traced.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import platform as _platform
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv import conv_lowering as cl

CACHE_ENV = 'JAXCONV_CACHE_DIR'
PASSES = ('fwd', 'dx', 'dw')

#: A timed candidate runs until it has taken this long in all (and at most ``MAX_RUNS`` times);
#: the fastest run counts. A candidate already this many times slower than the best is dropped
#: after one run.
MIN_TIME_S, MAX_RUNS, GIVE_UP_FACTOR = 0.02, 5, 4.0
#: A measured winner replaces the fixed rule's pick only when it is this much faster.
MARGIN = 0.15
#: ``direct`` unrolls one multiply-add per kernel tap: only for few channels and taps.
DIRECT_MAX_TERMS = 256


@dataclasses.dataclass
class TuningStats:
    """What autotuning cost this process: shapes measured and seconds spent, cache hits."""

    tuned: int = 0
    cached: int = 0
    seconds: float = 0.0

    def __str__(self):
        return (
            f'{self.tuned} conv shapes tuned in {self.seconds:.1f} s, {self.cached} from the cache'
        )


STATS = TuningStats()
_LOCK = threading.Lock()
_MEMORY: dict[str, dict] = {}  # this process's plans (also those read from the cache)
_LOADED: set[Path] = set()


# --------------------------------------------------------------------------------------------
# The machine and its cache file
# --------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()


def cpu_isa() -> str:
    """The widest x86 vector ISA this CPU has ('AVX-512', 'AVX2', ...), else the machine name."""
    try:
        flags = next(
            (
                line.split(':', 1)[1].split()
                for line in Path('/proc/cpuinfo').read_text().splitlines()
                if line.startswith('flags')
            ),
            [],
        )
    except OSError:
        flags = []
    for flag, name in (
        ('avx512f', 'AVX-512'),
        ('avx2', 'AVX2'),
        ('avx', 'AVX'),
        ('sse4_2', 'SSE4.2'),
    ):
        if flag in flags:
            return name
    return _platform.machine()


def machine_key() -> str:
    """What a cached plan is valid for: the CPU, its ISA and the compiler (jaxlib)."""
    import jaxlib

    return f'{cpu_model()} | {cpu_isa()} | {os.cpu_count()} cpus | jaxlib {jaxlib.__version__}'


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return Path(base) / 'jaxconv'


def cache_file() -> Path:
    key = machine_key()
    return cache_dir() / f'conv-plans-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json'


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get('machine') != machine_key():
        return {}
    return data.get('plans', {}) if isinstance(data.get('plans'), dict) else {}


def _load(path: Path) -> None:
    if path not in _LOADED:
        _LOADED.add(path)
        for key, entry in _read(path).items():
            try:
                cl.Plan.parse(entry['plan'])
            except (KeyError, TypeError, ValueError):
                continue  # a hand-edited or older entry: measured again
            _MEMORY.setdefault(key, entry)


def _store(path: Path, key: str, entry: dict) -> None:
    """Add one plan to the cache file: re-read, merge, write to a temporary file, rename, so
    that processes tuning at the same time lose nothing and a reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        plans = _read(path)
        plans[key] = entry
        tmp = path.with_name(f'{path.name}.{os.getpid()}.{threading.get_ident()}.tmp')
        tmp.write_text(
            json.dumps({'machine': machine_key(), 'plans': dict(sorted(plans.items()))}, indent=1)
            + '\n'
        )
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the plan still holds for this process


# --------------------------------------------------------------------------------------------
# Candidates and their timing
# --------------------------------------------------------------------------------------------
def _geometry(x_shape, w_shape, spec: cl.ConvSpec):
    n, h, wd, cin = x_shape
    kh, kw, _, cout = w_shape
    (sh, sw), (ph, pw), (dh, dw) = spec.stride, spec.padding, spec.dilation
    oh, ow = cl._out_size(h, kh, sh, ph, dh), cl._out_size(wd, kw, sw, pw, dw)
    taps = len(cl._live_taps(h, kh, sh, ph, dh)) * len(cl._live_taps(wd, kw, sw, pw, dw))
    return n, (h, wd), (oh, ow), cin, cout, taps


def candidates(x_shape, w_shape, spec: cl.ConvSpec, pass_: str) -> list[cl.Pass]:
    """The unchunked lowerings worth timing for one pass (chunked forms come after).

    Left out: XLA's forward and dx on maps of 2×2 or less, which fall off Eigen's spatial
    convolution path on every CPU (one call takes seconds); ``taps`` where it is ``im2col``
    (a single live tap); ``direct`` beyond a few channels; ``grouped`` without groups; ``s2d``
    beyond a few input channels or on those tiny maps; ``banded`` beyond a few input channels;
    ``col2im`` unless the conv is stride 1 with fewer channels out than in.
    """
    n, hw, ohw, cin, cout, taps = _geometry(x_shape, w_shape, spec)
    out = []
    if pass_ == 'dw' or min(*hw, *ohw) > 2:
        out.append(cl.Pass('xla'))
    out.append(cl.Pass('im2col'))
    if taps > 1:
        out.append(cl.Pass('taps'))
    if spec.groups == 1 and min(cin, cout) < 16 and cin * taps <= DIRECT_MAX_TERMS:
        out.append(cl.Pass('direct'))
    if spec.groups > 1:
        out.append(cl.Pass('grouped'))
    if min(*hw, *ohw) > 2 and cin < cl.FEW_CHANNELS:  # an XLA conv inside, on many channels
        out.append(cl.Pass('s2d'))
    if spec.groups == 1 and cin < cl.FEW_CHANNELS:  # a banded matmul widens K and N
        out.append(cl.Pass('banded'))
    fits = cl.col2im_bytes(x_shape, w_shape, spec) <= cl.COL2IM_MAX_BYTES
    if taps > 1 and spec.stride == (1, 1) and cout < cin and fits:
        out.append(cl.Pass('col2im'))  # dy's patches narrower than x's
    return out


def l2_cache_bytes() -> int:
    """This CPU's level-2 cache per core, from sysfs (1 MiB where it cannot be read)."""
    for index in Path('/sys/devices/system/cpu/cpu0/cache').glob('index*'):
        try:
            if (index / 'level').read_text().strip() == '2':
                size = (index / 'size').read_text().strip().upper()
                scale = {'K': 2**10, 'M': 2**20}.get(size[-1:], 1)
                return int(size.rstrip('KM')) * scale
        except (OSError, ValueError):
            continue
    return 2**20


def chunked(best: cl.Pass, x_shape, w_shape, spec: cl.ConvSpec, itemsize: int = 4) -> list[cl.Pass]:
    """Batch-chunked forms of the best matmul lowering, when its patch matrix is larger than
    this machine's L2 cache: chunks of the batch make it cache-sized (else nothing to gain)."""
    n, _, (oh, ow), cin, _, taps = _geometry(x_shape, w_shape, spec)
    if best.lowering in ('xla', 'direct'):  # no patch matrix to shrink
        return []
    if n * oh * ow * taps * cin * itemsize <= l2_cache_bytes():
        return []
    sizes = sorted({c for c in (n // 4, n // 16) if 1 <= c < n and n % c == 0}, reverse=True)
    return [cl.Pass(best.lowering, c) for c in sizes]


def _pass_fn(step: cl.Pass, pass_: str, spec: cl.ConvSpec):
    if pass_ == 'fwd':
        return jax.jit(lambda x, w, dy: cl.run_pass(step, 'fwd', spec, x, w))
    return jax.jit(lambda x, w, dy: cl.run_pass(step, pass_, spec, x, w, dy))


def _time(fn, args, best: float) -> float:
    """The fastest of a few runs of compiled ``fn`` (seconds)."""
    jax.block_until_ready(fn(*args))  # a first run: page in the buffers
    times: list[float] = []
    while len(times) < MAX_RUNS and sum(times) < MIN_TIME_S:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
        if times[0] > GIVE_UP_FACTOR * best:
            break
    return min(times)


def measure(x_shape, w_shape, spec: cl.ConvSpec, dtype='float32') -> dict:
    """Time each pass's candidates; returns the cache entry ``{'plan', 'ms', 'tune_s'}``.

    Compiling dominates the cost, so the candidates of a round compile in parallel (one thread
    per core) and are then timed one after the other, on a quiet machine.
    """
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    w = jnp.asarray(rng.standard_normal(w_shape) * 0.05, dtype)
    y_shape = jax.eval_shape(lambda x, w: cl.conv_xla(x, w, spec), x, w).shape
    dy = jnp.asarray(rng.standard_normal(y_shape), dtype)
    args = (x, w, dy)
    times: dict[str, dict[str, float]] = {p: {} for p in PASSES}

    def run_round(trials: list[tuple[str, cl.Pass]]):
        # Every compile finishes before the first timing starts: none runs beside a timing.
        compiled = list(
            _COMPILER.map(lambda t: _pass_fn(t[1], t[0], spec).lower(*args).compile(), trials)
        )
        for (pass_, step), fn in zip(trials, compiled):
            best = min(times[pass_].values(), default=np.inf)
            times[pass_][str(step)] = _time(fn, args, best)

    prior = cl.cpu_plan(x_shape, w_shape, spec, jnp.dtype(dtype).itemsize)

    def winner(pass_: str) -> cl.Pass:
        """The fastest, unless the fixed rule's pick is within ``MARGIN`` of it: timed alone,
        a pass ignores what it costs inside the whole step (fusion, scheduling), so a close
        race is no evidence to leave the rule."""
        timed = times[pass_]
        best = min(timed, key=timed.get)
        ruled = str(getattr(prior, pass_))
        if ruled in timed and timed[ruled] <= (1 + MARGIN) * timed[best]:
            best = ruled
        return cl.Pass.parse(best)

    run_round(
        [
            (p, c)
            for p in PASSES
            for c in dict.fromkeys([*candidates(x_shape, w_shape, spec, p), getattr(prior, p)])
        ]
    )
    itemsize = jnp.dtype(dtype).itemsize
    run_round(
        [(p, c) for p in PASSES for c in chunked(winner(p), x_shape, w_shape, spec, itemsize)]
    )
    return {
        'plan': str(cl.Plan(*map(winner, PASSES))),
        'ms': {p: {k: round(v * 1e3, 4) for k, v in times[p].items()} for p in PASSES},
        'tune_s': round(time.perf_counter() - t_start, 3),
    }


_COMPILER = concurrent.futures.ThreadPoolExecutor(
    os.cpu_count() or 1, thread_name_prefix='jaxconv-autotune-compile'
)
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='jaxconv-autotune')


def tuned_plan(x_shape, w_shape, spec: cl.ConvSpec, dtype, platform: str) -> cl.Plan:
    """The measured plan for this convolution: from memory, the cache file, or measured now."""
    key = cl.shape_key(x_shape, w_shape, spec, dtype, platform)
    path = cache_file()
    with _LOCK:
        _load(path)
        entry = _MEMORY.get(key)
        if entry is not None:
            STATS.cached += 1
            return cl.Plan.parse(entry['plan'])
        t0 = time.perf_counter()
        # A fresh thread of its own: this call may come from inside a jit trace.
        entry = _EXECUTOR.submit(
            measure, tuple(x_shape), tuple(w_shape), spec, jnp.dtype(dtype).name
        ).result()
        STATS.tuned += 1
        STATS.seconds += time.perf_counter() - t0
        _MEMORY[key] = entry
        _store(path, key, entry)
        return cl.Plan.parse(entry['plan'])


def forget() -> None:
    """Drop this process's in-memory plans (the next trace reads the cache file again)."""
    with _LOCK:
        _MEMORY.clear()
        _LOADED.clear()
