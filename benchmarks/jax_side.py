"""jaxconv's side of the speed benchmark: one compiled train step and one compiled forward.

The step is a pure function of (params, other state, optimizer state, batch) compiled ahead of
time with its state buffers donated, so a step is one XLA executable call with no host round
trip and no copy of the weights: the model is split once (``nnx.split``) and merged inside the
traced function, and nothing NNX-specific runs per step on the host.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxconv.models import create_model
from jaxconv.optim import torch_sgd

LEARNING_RATE, MOMENTUM = 0.01, 0.9


def cross_entropy(logits, labels):
    """``torch.nn.functional.cross_entropy`` (mean over the batch) for integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@dataclass
class CompiledStep:
    """An AOT-compiled step and what XLA says about it."""

    run: object              # callable: the step with its state threaded through
    compile_s: float         # trace + lower + compile
    temp_bytes: int | None   # XLA's scratch buffers (memory_analysis), None when unavailable
    xla_flops: float | None  # XLA's cost analysis, whole step, None when unavailable
    executable: object = None  # the jax ``Compiled`` (``.as_text()`` is the optimised HLO)


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


def build_model(arch: str, image_size: int, num_classes: int = 10, in_channels: int = 3,
                seed: int = 0):
    return create_model(arch, num_classes=num_classes, in_channels=in_channels,
                        image_size=image_size, rngs=nnx.Rngs(seed))


def train_step(model, x, y, *, lr: float = LEARNING_RATE, momentum: float = MOMENTUM
               ) -> CompiledStep:
    """Compile one SGD-momentum step (train mode: batch statistics, dropout) of ``model``."""
    model.train()
    tx = torch_sgd(lr, momentum)
    graphdef, params, others = nnx.split(model, nnx.Param, ...)
    # The step donates its state; copy it so the model's own arrays stay valid.
    params, others = jax.tree.map(jnp.copy, (params, others))
    opt_state = tx.init(params)

    def step(params, others, opt_state, x, y):
        model = nnx.merge(graphdef, params, others)
        loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(x), y))(model)
        updates, opt_state = tx.update(grads, opt_state, params)
        # The forward pass updated the batch statistics and dropout counters in ``model``.
        return (optax.apply_updates(params, updates), nnx.state(model, nnx.Not(nnx.Param)),
                opt_state, loss)

    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1, 2)).lower(
        params, others, opt_state, x, y).compile()
    compile_s = time.perf_counter() - t0
    state = [params, others, opt_state]

    def run():
        state[0], state[1], state[2], loss = compiled(*state, x, y)
        return loss.block_until_ready()

    return CompiledStep(run, compile_s, *_analyse(compiled), compiled)


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


def random_batch(batch_size: int, image_size: int, in_channels: int = 3, num_classes: int = 10,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A float32 NHWC batch and int labels, the same numbers fed to both frameworks."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size, image_size, image_size, in_channels), np.float32)
    y = rng.integers(0, num_classes, batch_size).astype(np.int32)
    return x, y


def matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    """XLA's float32 n×n matmul rate (median of ``repeats``): the ceiling a conv lowering aims at."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
    f = jax.jit(lambda a, b: a @ b)
    f(a, a).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / float(np.median(times)) / 1e9
