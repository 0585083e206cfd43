"""The arithmetic settings every parity comparison runs under, scoped to the comparison.

A comparison only means something when both frameworks compute in the precision they claim:

* float64 needs ``jax_enable_x64``;
* on a GPU, JAX runs float32 matmuls and convolutions in TF32/bf16 passes by default and torch
  runs convolutions in TF32 (``cudnn.allow_tf32``); 'highest' precision in JAX and TF32 off in
  torch make a float32 comparison mean the same on a GPU as on a CPU (where neither changes
  anything).

These are process-global switches, and other code in the same process (other tests: e.g. one
checks that float64 is refused while x64 is off) must not see them flipped. So they are set
for the duration of a comparison only: ``exact_numerics()`` is a context manager, and
``with_exact_numerics`` wraps every public entry point of ``parity.compare`` in it. Arrays
made inside (a float64 model's parameters) keep their dtype outside it, but JAX operations on
them outside it would be computed in float32: run them inside.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import torch


@contextlib.contextmanager
def exact_numerics():
    """float64 on in JAX, 'highest' matmul/conv precision, TF32 off in torch; restored after."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with jax.enable_x64(True), jax.default_matmul_precision('highest'):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def with_exact_numerics(fn):
    """Run ``fn`` inside ``exact_numerics()``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with exact_numerics():
            return fn(*args, **kwargs)

    return wrapper
