"""Timing and memory sampling shared by the speed benchmarks.

The machine these numbers come from is shared and noisy, so every comparison is made between
variants measured *interleaved* in one process: one timed run of each variant in turn, repeated,
so that a burst of load from elsewhere hits all of them alike. A "run" is a fixed number of steps
sized during warm-up to last at least ``min_run_s``, which keeps the per-call overhead of tiny
models from dominating; the figure reported is the median over runs.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return 0


class RssSampler:
    """Peak RSS above the level at entry, sampled every ``interval_s`` by a background thread.

    A sampled peak can miss a spike shorter than the interval, and memory the allocator keeps
    cached from an earlier variant is not counted again: read it as "extra memory this variant
    needed", not as an exact high-water mark.
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s, self.peak, self.base = interval_s, 0, 0
        self._stop = threading.Event()

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra_bytes(self) -> int:
        return max(0, self.peak - self.base)


@dataclass
class Variant:
    """One thing to time: ``step()`` runs one step and waits for its result (no async left)."""

    name: str
    step: Callable[[], object]
    images_per_step: int
    steps_per_run: int = 1
    times: list[float] = field(default_factory=list)
    peak_extra_bytes: int = 0
    error: str | None = None

    def calibrate(self, warmup: int, min_run_s: float):
        """Run ``warmup`` steps, then size a run to last at least ``min_run_s``."""
        for _ in range(max(1, warmup)):
            self.step()
        t0 = time.perf_counter()
        self.step()
        one = max(time.perf_counter() - t0, 1e-6)
        self.steps_per_run = max(1, int(-(-min_run_s // one)))

    def timed_run(self):
        with RssSampler() as mem:
            t0 = time.perf_counter()
            for _ in range(self.steps_per_run):
                self.step()
            self.times.append(time.perf_counter() - t0)
        self.peak_extra_bytes = max(self.peak_extra_bytes, mem.extra_bytes)

    @property
    def images_per_s(self) -> float:
        return self.images_per_step * self.steps_per_run / statistics.median(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median of the run times: how noisy this variant's runs were."""
        return (max(self.times) - min(self.times)) / statistics.median(self.times)


def time_interleaved(
    variants: list[Variant], repeats: int, *, warmup: int = 2, min_run_s: float = 0.25
) -> list[Variant]:
    """Warm up and calibrate each variant, then time them in turn, ``repeats`` rounds.

    A variant whose step raises is marked with ``error`` and dropped from later rounds, so one
    broken backend (say ``torch.compile`` without a compiler) does not sink the others.
    """
    live = []
    for v in variants:
        try:
            v.calibrate(warmup, min_run_s)
            live.append(v)
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            v.error = f'{type(e).__name__}: {e}'.splitlines()[0][:300]
    for _ in range(repeats):
        for v in list(live):
            try:
                v.timed_run()
            except Exception as e:  # noqa: BLE001
                v.error = f'{type(e).__name__}: {e}'.splitlines()[0][:300]
                live.remove(v)
    return variants
