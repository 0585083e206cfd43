"""Process-level settings that make the CPU training step faster; call ``configure()`` first.

Why: XLA:CPU allocates a step's scratch memory from its worker threads, whose glibc arenas
serve large blocks as fresh ``mmap``s returned with ``munmap`` on free, so every step would
page-fault (and the kernel zero) its whole working set again. Three ``mallopt`` calls make the
memory reusable:

* ``M_ARENA_MAX = 1``: every thread allocates from the main arena, which can grow with ``brk``;
* ``M_MMAP_MAX = 0``: large blocks come from that heap too, not from ``mmap``;
* ``M_TRIM_THRESHOLD`` high: freed heap memory is kept for the next step.

Numbers are unchanged; the cost is that the process keeps its peak heap size. The effect, and
the XLA flags tried and not set, are measured in ``benchmarks/README.md``.

``configure()`` is for this process only and should run before JAX starts its threads (their
arenas are created on first use): ``train.py`` and the benchmarks call it first.
``JAXCONV_KEEP_MALLOC=1`` skips it, to measure without.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's <malloc.h> numbers
_applied: dict[str, bool] = {}


def reuse_freed_memory() -> bool:
    """Make glibc malloc keep and reuse freed memory (see above); False where not glibc."""
    if 'malloc' in _applied:
        return _applied['malloc']
    ok = False
    if sys.platform.startswith('linux') and os.environ.get('JAXCONV_KEEP_MALLOC') != '1':
        try:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
            ok = all(
                libc.mallopt(param, value)
                for param, value in (
                    (_M_ARENA_MAX, 1),
                    (_M_MMAP_MAX, 0),
                    (_M_TRIM_THRESHOLD, 2**31 - 1),
                )
            )
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
            ok = False
    _applied['malloc'] = ok
    return ok


def configure() -> dict[str, bool]:
    """Apply every setting above; returns what was applied (for logs and benchmark reports)."""
    return {'malloc_reuse': reuse_freed_memory()}
