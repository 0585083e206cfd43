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

One loss (:func:`classification_loss`) and one train step (:func:`make_train_step`) serve the
training loop, ``benchmarks/`` and ``parity/``, as Flax's imagenet example shares its
``train_step``: their differences are options of the step, not copies of it.
"""

from __future__ import annotations

import contextlib
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


def split_model(model: nnx.Module, *, keep_mode: bool = False) -> SplitModel:
    """Split ``model`` into (graph in train mode, graph in eval mode, params, batch stats, RNGs).

    The filters must cover every variable: a model with other mutable state would otherwise
    silently lose it in checkpoints, so ``nnx.split`` is left to raise on anything else.
    ``keep_mode`` takes the model in the mode it is in for both graphs: the parity harness sets
    its own (dropout off, or eval-mode gradients).
    """
    if not keep_mode:
        model.eval()
    eval_graph = nnx.graphdef(model)
    if not keep_mode:
        model.train()
    train_graph, params, batch_stats, rngs = nnx.split(
        model, nnx.Param, nnx.BatchStat, nnx.RngState
    )
    return SplitModel(train_graph, eval_graph, params, batch_stats, rngs)


def init_state(split: SplitModel, tx: optax.GradientTransformation) -> TrainState:
    return {
        'params': split.params,
        'batch_stats': split.batch_stats,
        'opt_state': tx.init(split.params),
        'step': jnp.zeros((), jnp.int32),
    }


def _inputs(x_uint8, spec: DatasetSpec, image_size: int, augment: str = 'none', key=None):
    return preprocess(
        x_uint8, image_size=image_size, mean=spec.mean, std=spec.std, augment=augment, key=key
    )


AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's weight on each auxiliary head (paper, torchvision recipe)


def output_heads(out) -> dict:
    """A model's output as {head name: logits}, the main head first and named 'logits'.

    A model returns logits, or (torchvision's GoogLeNet in train mode) a namedtuple of logits
    and auxiliary heads.
    """
    if isinstance(out, tuple):
        names = getattr(out, '_fields', None) or [f'output{i}' for i in range(len(out))]
        heads = {n: v for n, v in zip(names, out) if v is not None}
        first = next(iter(heads))
        return {'logits' if n == first else n: v for n, v in heads.items()}
    return {'logits': out}


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """Per-example cross-entropy, torch's ``F.cross_entropy(..., reduction='none',
    label_smoothing=...)``: the target is ``1 - label_smoothing`` on the label plus
    ``label_smoothing / classes`` on every class."""
    if not label_smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return optax.softmax_cross_entropy(logits, optax.smooth_labels(targets, label_smoothing))


def classification_loss(out, labels, label_smoothing: float = 0.0):
    """Batch-mean cross-entropy of the main logits (torch's ``CrossEntropyLoss``), plus 0.3 ×
    each auxiliary head's (GoogLeNet), added in torch's order; every head with the same label
    smoothing."""
    heads = output_heads(out)
    loss = cross_entropy(heads.pop('logits'), labels, label_smoothing).mean()
    for v in heads.values():
        loss = loss + AUX_LOSS_WEIGHT * cross_entropy(v, labels, label_smoothing).mean()
    return loss


def make_train_step(
    split: SplitModel,
    tx: optax.GradientTransformation,
    *,
    spec: DatasetSpec | None = None,
    image_size: int | None = None,
    seed: int = 0,
    replicated=None,
    batch=None,
    augment: str = 'none',
    label_smoothing: float = 0.0,
    tap=None,
    with_grads: bool = False,
    donate: bool = True,
):
    """``step(state, rngs, x (B, H, W, C), y (B,)) -> (state, {'loss', 'correct'})``.

    The one train step: the training loop, the speed benchmark and the parity harness all run
    it, so what is timed and what is compared with torch is what trains. ``loss`` is
    :func:`classification_loss` (with ``label_smoothing``), ``correct`` the number of right
    top-1 predictions.

    ``spec``: ``x`` is uint8 images, converted, resized to ``image_size`` and normalised with
    the dataset's mean/std inside the step; ``augment``
    (:data:`jaxconv.data.augment.AUGMENTATIONS`) draws from ``fold_in(augment_key(seed),
    step)``, like the dropout masks a function of (seed, step). Without ``spec``, ``x`` is the
    model's input as it is (the benchmark's float batch, the parity harness's float64 one).

    ``state`` is donated (its buffers are reused for the result) unless ``donate=False``.
    ``replicated`` and ``batch``, when given, are the shardings of the state and of the batch.
    ``tap(model, extra)``, when given, is a context manager the forward runs in (the parity
    harness's shared dropout masks) and the step takes ``extra`` as a fifth argument.
    ``with_grads`` adds ``'grads'``, the gradients w.r.t. ``state['params']``, to the metrics.
    """
    graph = split.train_graph
    root = dropout_key(seed)
    augment_root = augment_key(seed)

    def step(state, rngs, x, y, *extra):
        model = nnx.merge(graph, state['params'], state['batch_stats'], rngs)
        nnx.reseed(model, dropout=jax.random.fold_in(root, state['step']))
        inputs = (
            x
            if spec is None
            else _inputs(
                x, spec, image_size, augment, jax.random.fold_in(augment_root, state['step'])
            )
        )

        def loss_fn(model):
            with tap(model, *extra) if tap is not None else contextlib.nullcontext():
                out = model(inputs)
            return classification_loss(out, y, label_smoothing), output_heads(out)['logits']

        (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
        new_state = {
            'params': optax.apply_updates(state['params'], updates),
            'batch_stats': nnx.state(model, nnx.BatchStat),
            'opt_state': opt_state,
            'step': state['step'] + 1,
        }
        correct = jnp.sum(jnp.argmax(logits, -1) == y, dtype=jnp.int32)
        metrics = {'loss': loss, 'correct': correct}
        if with_grads:
            metrics['grads'] = grads
        return new_state, metrics

    shardings = {}
    if replicated is not None:
        inputs_in = (replicated, replicated, batch, batch) + ((replicated,) if tap else ())
        shardings = dict(in_shardings=inputs_in, out_shardings=(replicated, replicated))
    return jax.jit(step, donate_argnums=0 if donate else (), **shardings)


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
        loss = cross_entropy(logits, y)
        predicted = jnp.argmax(logits, -1)
        right = predicted == y
        return {
            'loss_sum': jnp.sum(jnp.where(mask, loss, 0.0)),
            'correct': jnp.sum(right & mask, dtype=jnp.int32),
            'count': jnp.sum(mask, dtype=jnp.int32),
            'predicted': predicted.astype(jnp.int32),
        }

    return jax.jit(
        step, in_shardings=(replicated, replicated, batch, batch, batch), out_shardings=replicated
    )
