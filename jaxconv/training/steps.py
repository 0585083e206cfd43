"""The model as pure state plus the jitted train and eval steps.

Why ``nnx.split`` / ``nnx.merge`` around ``jax.jit`` instead of ``nnx.jit``: the step then takes
and returns plain pytrees, so the Python work per call is jax's C++ dispatch only (nnx.jit walks
the module graph on every call), the state can be donated and given explicit shardings, and the
very same pytree is what orbax checkpoints.

The state is ``{'params', 'batch_stats', 'opt_state', 'step'}``. The RNG state of the model
(dropout streams) is not part of it: every train step reseeds the dropout streams with
``fold_in(dropout_key(seed), step)``, so the masks of step ``k`` depend on ``(seed, k)`` only and a
resumed run draws the numbers the uninterrupted run drew. Modes are fixed per graph: the train
step merges the graph split in ``model.train()`` (batch statistics, dropout on), the eval step the
one split in ``model.eval()`` (running statistics, dropout off).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxconv.data import DatasetSpec, preprocess
from jaxconv.data.augment import augment_key

TrainState = dict[str, Any]


def dropout_key(seed: int) -> jax.Array:
    """Root of the per-step dropout keys; distinct from the ``params`` stream seeded by ``seed``."""
    return jax.random.fold_in(jax.random.key(seed), 0x64726F70)  # 'drop'


def model_rngs(seed: int) -> nnx.Rngs:
    """The ``nnx.Rngs`` a model is built with: parameters from ``seed``, a 'dropout' stream."""
    return nnx.Rngs(params=seed, dropout=dropout_key(seed))


@dataclasses.dataclass(frozen=True)
class SplitModel:
    """A model taken apart: the graphs of both modes, its initial state and its RNG state."""

    train_graph: Any
    eval_graph: Any
    params: nnx.State
    batch_stats: nnx.State
    rngs: nnx.State


def split_model(model: nnx.Module) -> SplitModel:
    """Split ``model`` into (graph in train mode, graph in eval mode, params, batch stats, RNGs).

    The filters must cover every variable: a model with other mutable state would otherwise
    silently lose it in checkpoints, so ``nnx.split`` is left to raise on anything else.
    """
    model.eval()
    eval_graph = nnx.graphdef(model)
    model.train()
    train_graph, params, batch_stats, rngs = nnx.split(model, nnx.Param, nnx.BatchStat,
                                                       nnx.RngState)
    return SplitModel(train_graph, eval_graph, params, batch_stats, rngs)


def init_state(split: SplitModel, tx: optax.GradientTransformation) -> TrainState:
    return {'params': split.params, 'batch_stats': split.batch_stats,
            'opt_state': tx.init(split.params), 'step': jnp.zeros((), jnp.int32)}


def _inputs(x_uint8, spec: DatasetSpec, image_size: int, augment: str = 'none', key=None):
    return preprocess(x_uint8, image_size=image_size, mean=spec.mean, std=spec.std,
                      augment=augment, key=key)


def make_train_step(split: SplitModel, tx: optax.GradientTransformation, *, spec: DatasetSpec,
                    image_size: int, seed: int, replicated, batch, augment: str = 'none'):
    """``step(state, rngs, x_uint8 (B, H, W, C), y (B,)) -> (state, {'loss', 'correct'})``.

    ``loss`` is the batch-mean cross-entropy (torch's ``CrossEntropyLoss``), ``correct`` the
    number of right top-1 predictions. ``state`` is donated: its buffers are reused for the
    result. ``replicated`` and ``batch`` are the shardings of the state and of the batch.
    ``augment`` (:data:`jaxconv.data.augment.AUGMENTATIONS`) draws from
    ``fold_in(augment_key(seed), step)``, like the dropout masks a function of (seed, step).
    """
    graph = split.train_graph
    root = dropout_key(seed)
    augment_root = augment_key(seed)

    def step(state, rngs, x, y):
        model = nnx.merge(graph, state['params'], state['batch_stats'], rngs)
        nnx.reseed(model, dropout=jax.random.fold_in(root, state['step']))
        inputs = _inputs(x, spec, image_size, augment,
                         jax.random.fold_in(augment_root, state['step']))

        def loss_fn(model):
            logits = model(inputs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

        (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
        new_state = {'params': optax.apply_updates(state['params'], updates),
                     'batch_stats': nnx.state(model, nnx.BatchStat),
                     'opt_state': opt_state, 'step': state['step'] + 1}
        correct = jnp.sum(jnp.argmax(logits, -1) == y, dtype=jnp.int32)
        return new_state, {'loss': loss, 'correct': correct}

    return jax.jit(step, donate_argnums=0, in_shardings=(replicated, replicated, batch, batch),
                   out_shardings=(replicated, replicated))


def make_eval_step(split: SplitModel, *, spec: DatasetSpec, image_size: int, replicated, batch):
    """``step(state, rngs, x, y, mask) -> {'loss_sum', 'correct', 'count', 'predicted'}``.

    ``mask`` marks the real rows of a padded last batch, so the sums count each test example once.
    ``predicted`` (B,) is the top-1 class of every row, padding included, for per-class
    accuracy and the confusion matrix (``jaxconv.evaluate``).
    """
    graph = split.eval_graph

    def step(state, rngs, x, y, mask):
        model = nnx.merge(graph, state['params'], state['batch_stats'], rngs)
        logits = model(_inputs(x, spec, image_size))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        predicted = jnp.argmax(logits, -1)
        right = predicted == y
        return {'loss_sum': jnp.sum(jnp.where(mask, loss, 0.0)),
                'correct': jnp.sum(right & mask, dtype=jnp.int32),
                'count': jnp.sum(mask, dtype=jnp.int32), 'predicted': predicted.astype(jnp.int32)}

    return jax.jit(step, in_shardings=(replicated, replicated, batch, batch, batch),
                   out_shardings=replicated)
