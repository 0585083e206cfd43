"""Process-level settings that make the CPU training step faster; call ``configure()`` first.

Measured on the project's 2-core machine (see ``benchmarks/README.md``):

* glibc's ``malloc`` serves every allocation above its mmap threshold (at most 32 MiB) with a
  fresh ``mmap`` and returns it with ``munmap`` on free. XLA:CPU allocates a step's large
  temporaries per execution, so each step page-faults its whole working set in again: a
  memory-bound fusion writing 75 MB ran at 1.2 GB/s instead of 5-13 GB/s. ``mallopt`` with
  ``M_MMAP_MAX = 0`` (serve everything from the heap) and a high ``M_TRIM_THRESHOLD`` (keep
  freed heap memory) lets the next step reuse pages that are already mapped. The cost: the
  process keeps its peak heap size instead of returning memory to the system between steps.
  It changes no numbers. Torch in the same process benefits alike.

The setting is for this process only and may be applied at any time; it matters for
allocations made after it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's <malloc.h> parameter numbers
_applied: dict[str, bool] = {}


def keep_freed_memory_mapped() -> bool:
    """Tell glibc malloc to keep freed memory and never use mmap; False where not glibc."""
    if 'malloc' in _applied:
        return _applied['malloc']
    ok = False
    if sys.platform.startswith('linux') and os.environ.get('JAXCONV_KEEP_MALLOC') != '1':
        try:
            libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
            ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
            ok = False
    _applied['malloc'] = ok
    return ok


def configure() -> dict[str, bool]:
    """Apply every setting above; returns what was applied (for logs and benchmark reports).

    ``JAXCONV_KEEP_MALLOC=1`` leaves malloc alone (to measure without it).
    """
    return {'malloc_keep_freed': keep_freed_memory_mapped()}
