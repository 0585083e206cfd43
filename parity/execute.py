"""Running a jaxconv model and its torch twin the same way: forward, loss and gradients.

The Flax side is written as pure functions of ``(graphdef, state)`` under ``jax.jit`` with the
graphdef static, so one compilation per architecture, dtype and mode serves every test, the
CLI and the report scripts in a process (eager op-by-op dispatch is ~15x slower on CPU).

Per-layer outputs and shared dropout masks both go through ``jaxconv.layers.tap``: the tap is
installed *inside* the traced function, so it becomes part of the compiled computation
instead of being consulted only on the first (tracing) call.

Dropout: in every comparison the Flax ``Dropout`` layers are deterministic and the torch
``nn.Dropout`` modules are replaced by ``MaskedDropout``; dropout then happens only where a
mask is given, and the same mask is given to both sides (or none: dropout off).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import partial

import jax
import numpy as np
import optax
import torch
from flax import nnx
from torch import nn
from torch.nn import functional as F

from jaxconv import conv_lowering
from jaxconv import layers as L
from jaxconv.training import steps
from jaxconv.training.steps import AUX_LOSS_WEIGHT, output_heads
from parity.transfer import key_map

Arrays = Mapping[str, np.ndarray]


# --------------------------------------------------------------------------------------------
# Layout: compare everything in torch's layout (NCHW maps, torch state_dict keys).
# --------------------------------------------------------------------------------------------
def nhwc_to_nchw(a: np.ndarray) -> np.ndarray:
    """A Flax activation (N, H, W, C) in torch's (N, C, H, W) layout; other ranks unchanged."""
    return np.transpose(a, (0, 3, 1, 2)) if a.ndim == 4 else a


def flax_state_as_torch(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every parameter and buffer of ``model`` under its torch key, in torch's layout."""
    return {
        e.torch_key: np.asarray(e.to_torch(np.asarray(e.variable[...]))) for e in key_map(model)
    }


def torch_state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# Modes and dropout
# --------------------------------------------------------------------------------------------
class MaskedDropout(nn.Module):
    """Stands in for ``nn.Dropout`` in a twin: multiplies by the mask it is given, else identity.

    The mask already carries torch's inverted scaling (kept / (1 - p)), as Flax's does.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.mask: torch.Tensor | None = None

    def forward(self, x):
        return x if self.mask is None else x * self.mask

    def extra_repr(self):
        return f'p={self.p}, mask={"set" if self.mask is not None else "none"}'


def _set_submodule(root: nn.Module, dotted: str, module: nn.Module):
    parent_name, _, child = dotted.rpartition('.')
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def replace_torch_dropout(model: nn.Module) -> nn.Module:
    """Swap each ``nn.Dropout`` of ``model`` for a ``MaskedDropout`` of the same name (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Dropout):
            _set_submodule(model, name, MaskedDropout(module.p))
    return model


@contextlib.contextmanager
def torch_masks(model: nn.Module, masks: Arrays | None):
    """Give each ``MaskedDropout`` its mask (Flax layout in, converted to NCHW) for one block."""
    modules = dict(model.named_modules())
    dtype = next(model.parameters()).dtype
    try:
        for name, mask in (masks or {}).items():
            module = modules.get(name)
            if not isinstance(module, MaskedDropout):
                raise KeyError(f'the torch twin has no dropout module named {name!r}')
            module.mask = torch.as_tensor(np.ascontiguousarray(nhwc_to_nchw(np.asarray(mask)))).to(
                dtype
            )
        yield
    finally:
        for module in modules.values():
            if isinstance(module, MaskedDropout):
                module.mask = None


def flax_dropout_layers(model: nnx.Module) -> list[tuple[str, L.Dropout]]:
    return [(n, m) for n, m in L.named_layers(model) if isinstance(m, L.Dropout)]


def check_mode(mode: str):
    if mode not in ('train', 'eval'):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")


def set_flax_mode(model: nnx.Module, mode: str):
    """'train' (BatchNorm on batch statistics) or 'eval', with random dropout off.

    Random dropout never runs in a comparison: the two frameworks' generators differ. Dropout
    is applied only through explicit masks shared by both sides (the ``masks`` arguments).
    """
    check_mode(mode)
    model.train() if mode == 'train' else model.eval()
    for _, layer in flax_dropout_layers(model):
        layer.deterministic = True


def set_torch_mode(model: nn.Module, mode: str):
    """The torch side of ``set_flax_mode`` (its dropouts are ``MaskedDropout``: mask or nothing)."""
    check_mode(mode)
    model.train(mode == 'train')


# --------------------------------------------------------------------------------------------
# Flax side (pure, jitted)
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _recording_tap(model: nnx.Module, masks: Arrays, outputs: dict | None):
    """Inside a trace: apply the shared dropout masks and (optionally) record every layer output."""
    names = {id(layer): name for name, layer in L.named_layers(model)}
    unknown = set(masks) - {n for n, _ in flax_dropout_layers(model)}
    if unknown:
        raise KeyError(f'no Flax Dropout layer named {sorted(unknown)}')

    def observe(layer, y):
        name = names.get(id(layer))
        if name in masks:
            y = y * masks[name]  # the layer is deterministic, so y is its input
        if outputs is not None and name is not None:
            # jit returns dicts with sorted keys: a numbered prefix keeps execution order.
            outputs[f'{len(outputs):05d} {name}'] = y
        return y

    with L.tap(observe):
        yield


# The graphdef is a static argument: it holds the structure and the train/eval flags, so one
# compilation serves each architecture, mode, dtype and input shape.
@partial(jax.jit, static_argnums=0, static_argnames='record')
def flax_forward(graphdef, state, x, masks, record: bool = False):
    """{head: logits} (``output_heads``), the new state (BatchNorm statistics in train mode)
    and, with ``record``, every layer's output keyed ``'<call index> <dotted name>'`` (sorted
    = execution order; see ``recorded_outputs``)."""
    model = nnx.merge(graphdef, state)
    outputs = {} if record else None
    with _recording_tap(model, masks, outputs):
        heads = output_heads(model(x))
    return heads, nnx.state(model), outputs


def recorded_outputs(outputs) -> list[tuple[str, np.ndarray]]:
    """``flax_forward``'s recorded outputs as (dotted name, array) in execution order."""
    return [(key.split(' ', 1)[1], np.asarray(v)) for key, v in sorted(outputs.items())]


# --------------------------------------------------------------------------------------------
# The loss and the train step are the training loop's own (``jaxconv.training.steps``).
# --------------------------------------------------------------------------------------------
def torch_classification_loss(
    out, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """``steps.classification_loss`` in torch (``F.cross_entropy``)."""
    heads = output_heads(out)
    loss = F.cross_entropy(heads.pop('logits'), labels, label_smoothing=label_smoothing)
    for v in heads.values():
        loss = loss + AUX_LOSS_WEIGHT * F.cross_entropy(v, labels, label_smoothing=label_smoothing)
    return loss


def _shared_masks(model: nnx.Module, masks: Arrays):
    """The train step's tap: the shared dropout masks, applied inside the trace."""
    return _recording_tap(model, masks, None)


#: An optimizer that leaves the parameters as they are: gradients alone (``grad_diff``).
NO_UPDATE = optax.set_to_zero()

_TRAIN_STEPS: dict = {}


def flax_train_step(
    split: steps.SplitModel,
    tx: optax.GradientTransformation = NO_UPDATE,
    label_smoothing: float = 0.0,
):
    """The training loop's step (``steps.make_train_step``) as the harness runs it:
    ``step(state, rngs, x, labels, masks) -> (state, {'loss', 'correct', 'grads'})``.

    ``x`` is the model input as it is (no uint8 preprocessing), ``masks`` the shared dropout
    masks (``_shared_masks``), nothing donated (the pair keeps its arrays). One step per (graph,
    optimizer), so one compilation serves every test of an arch, mode and dtype.
    """
    key = (split.train_graph, tx, label_smoothing)
    if key not in _TRAIN_STEPS:
        _TRAIN_STEPS[key] = steps.make_train_step(
            split,
            tx,
            label_smoothing=label_smoothing,
            tap=_shared_masks,
            with_grads=True,
            donate=False,
        )
    return _TRAIN_STEPS[key]


def dropout_input_shapes(graphdef, state, x_shape, dtype) -> dict[str, tuple[int, ...]]:
    """Shape of each Dropout layer's input for an input of ``x_shape`` (traced, not computed)."""
    x = jax.ShapeDtypeStruct(x_shape, dtype)

    def shapes(state, x):
        model = nnx.merge(graphdef, state)
        outputs = {}
        with _recording_tap(model, {}, outputs):
            model(x)
        by_name = {key.split(' ', 1)[1]: v for key, v in outputs.items()}
        return {n: by_name[n] for n, _ in flax_dropout_layers(model)}

    with conv_lowering.lowering('heuristic'):  # shapes only: never autotune here
        out = jax.eval_shape(shapes, state, x)
    return {n: tuple(s.shape) for n, s in out.items()}


def grads_as_torch(split: steps.SplitModel, grads) -> dict[str, np.ndarray]:
    """Flax gradients under torch parameter keys, in torch's layout (through the same key map)."""
    model = nnx.merge(split.train_graph, grads, split.batch_stats, split.rngs)
    return {
        e.torch_key: np.asarray(e.to_torch(np.asarray(e.variable[...])))
        for e in key_map(model)
        if isinstance(e.variable, nnx.Param)
    }


# --------------------------------------------------------------------------------------------
# torch side
# --------------------------------------------------------------------------------------------
def _as_torch(a: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(a))
    return t.to(dtype) if dtype is not None else t


def torch_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def torch_forward(
    model: nn.Module,
    x_nhwc: np.ndarray,
    masks: Arrays | None = None,
    record: list[str] | None = None,
):
    """({head: logits}, {name: output in NCHW}) of the twin on the NHWC batch ``x_nhwc``.

    ``record`` names the modules whose outputs to keep (forward hooks on the same dotted names
    the Flax layers carry). ``outputs[name]`` lists one output per call, in call order: a
    module may run more than once (torchvision's ResNet blocks reuse one ``relu``).
    """
    outputs, handles = {}, []
    modules = dict(model.named_modules())
    for name in dict.fromkeys(record or []):
        if name in modules:
            handles.append(
                modules[name].register_forward_hook(
                    lambda _m, _i, y, name=name: outputs.setdefault(name, []).append(
                        y.detach().cpu().numpy().copy()
                    )
                )
            )  # copy: twins add in place
    x = _as_torch(x_nhwc.transpose(0, 3, 1, 2), torch_dtype(model))
    try:
        with torch.no_grad(), torch_masks(model, masks):
            heads = output_heads(model(x))
    finally:
        for h in handles:
            h.remove()
    return {k: v.detach().cpu().numpy() for k, v in heads.items()}, outputs


def torch_backward(
    model: nn.Module,
    x_nhwc: np.ndarray,
    labels: np.ndarray,
    masks: Arrays | None = None,
    label_smoothing: float = 0.0,
):
    """(loss, {head: logits}) of ``torch_classification_loss`` on one batch, with the
    gradients left in each parameter's ``.grad`` (for an optimizer step)."""
    x = _as_torch(x_nhwc.transpose(0, 3, 1, 2), torch_dtype(model))
    model.zero_grad(set_to_none=True)
    with torch_masks(model, masks):
        out = model(x)
        loss = torch_classification_loss(out, _as_torch(labels.astype(np.int64)), label_smoothing)
        loss.backward()
    return float(loss.item()), {k: v.detach().cpu().numpy() for k, v in output_heads(out).items()}


def torch_loss_and_grads(
    model: nn.Module,
    x_nhwc: np.ndarray,
    labels: np.ndarray,
    masks: Arrays | None = None,
    label_smoothing: float = 0.0,
):
    """(loss, {head: logits}, {param key: grad}) of ``torch_classification_loss`` on one
    batch (a parameter the loss does not reach has a zero gradient, as in Flax)."""
    loss, heads = torch_backward(model, x_nhwc, labels, masks, label_smoothing)
    grads = {
        k: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().cpu().numpy()
        for k, p in model.named_parameters()
    }
    return loss, heads, grads


@contextlib.contextmanager
def preserved_buffers(model: nn.Module):
    """Undo a train-mode forward's changes to the BatchNorm buffers when the block ends."""
    saved = {k: v.detach().clone() for k, v in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(saved[k])
