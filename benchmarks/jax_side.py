"""jaxconv's side of the speed benchmark: one compiled train step and one compiled forward.

The train step is the training loop's (``jaxconv.training.steps.make_train_step``), compiled
ahead of time with its state donated, so a step is one XLA executable call with no host round
trip and no copy of the weights: the model is split once and merged inside the traced
function, and nothing NNX-specific runs per step on the host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.models import create_model
from jaxconv.optim import torch_sgd
from jaxconv.training import steps

LEARNING_RATE, MOMENTUM = 0.01, 0.9


@dataclass
class CompiledStep:
    """An AOT-compiled step and what XLA says about it."""

    run: object  # callable: the step with its state threaded through
    compile_s: float  # trace + lower + compile
    temp_bytes: int | None  # XLA's scratch buffers (memory_analysis), None when unavailable
    xla_flops: float | None  # XLA's cost analysis, whole step, None when unavailable
    executable: object = None  # the jax ``Compiled`` (``.as_text()`` is the optimised HLO)
    state: list | None = None  # [the train state the step threads through], train steps only


def _analyse(compiled) -> tuple[int | None, float | None]:
    temp = flops = None
    try:
        mem = compiled.memory_analysis()
        temp = int(mem.temp_size_in_bytes) if mem is not None else None
    except Exception:  # noqa: BLE001 - not every backend implements it
        pass
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost['flops']) if cost and 'flops' in cost else None
    except Exception:  # noqa: BLE001
        pass
    return temp, flops


def build_model(
    arch: str, image_size: int, num_classes: int = 10, in_channels: int = 3, seed: int = 0
):
    """The model as ``train.py`` builds it (``steps.model_rngs``: a dropout stream of its own)."""
    return create_model(
        arch,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        rngs=steps.model_rngs(seed),
    )


def train_step(
    model,
    x,
    y,
    *,
    lr: float = LEARNING_RATE,
    momentum: float = MOMENTUM,
    compiler_options: dict | None = None,
) -> CompiledStep:
    """Compile the training loop's own step (``steps.make_train_step``) of ``model`` with
    SGD-momentum, train mode. ``x`` is fed as it is (no uint8 preprocessing), so both
    frameworks get the same float batch. ``compiler_options`` (XLA ``DebugOptions`` fields)
    apply to this compile only: a flag A/B'd in one process (``compile_options.py``)."""
    tx = torch_sgd(lr, momentum)
    split = steps.split_model(model)
    # The step donates its state; copy it so the model's own arrays stay valid.
    state = jax.tree.map(jnp.copy, steps.init_state(split, tx))
    t0 = time.perf_counter()
    lowered = steps.make_train_step(split, tx).lower(state, split.rngs, x, y)
    compiled = lowered.compile(compiler_options=compiler_options)
    compile_s = time.perf_counter() - t0
    holder = [state]

    def run():
        holder[0], metrics = compiled(holder[0], split.rngs, x, y)
        return metrics['loss'].block_until_ready()

    return CompiledStep(run, compile_s, *_analyse(compiled), compiled, holder)


def forward_step(model, x) -> CompiledStep:
    """Compile the eval-mode forward (running statistics, no dropout): inference throughput."""
    model.eval()
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    t0 = time.perf_counter()
    compiled = jax.jit(forward).lower(state, x).compile()
    compile_s = time.perf_counter() - t0

    def run():
        return compiled(state, x).block_until_ready()

    return CompiledStep(run, compile_s, *_analyse(compiled), compiled)


def random_batch(
    batch_size: int, image_size: int, in_channels: int = 3, num_classes: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A float32 NHWC batch and int labels, the same numbers fed to both frameworks."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, image_size, image_size, in_channels), np.float32)
    y = rng.integers(0, num_classes, batch_size).astype(np.int32)
    return x, y


def matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    """XLA's float32 n×n matmul rate (median of ``repeats``): the ceiling a conv lowering aims
    at."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
    f = jax.jit(lambda a, b: a @ b)
    f(a, a).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / float(np.median(times)) / 1e9
