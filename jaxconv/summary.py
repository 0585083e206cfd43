"""Layer tables like the course's ``layer_summary``: output shape and parameter count per layer.

Shapes come from ``jax.eval_shape`` (no FLOPs spent, so a VGG-11 at 224×224 is instant); the
model is run as an eval-mode copy, so its BatchNorm statistics and RNG streams stay untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv import conv_lowering
from jaxconv.layers import named_layers, tap


@dataclass(frozen=True)
class LayerRow:
    name: str  # torch-style dotted name, e.g. 'net.3'
    kind: str  # class name, e.g. 'Conv2d', 'Sequential'
    shape: tuple  # output shape, NHWC for feature maps
    params: int  # trainable parameters inside this layer

    def torch_shape(self) -> tuple:
        """The shape as torch prints it (NCHW for feature maps)."""
        s = self.shape
        return (s[0], s[3], s[1], s[2]) if len(s) == 4 else s


def count_params(module) -> int:
    """Number of trainable parameters (``nnx.Param`` elements), as the notes' ``numel`` sum."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _top_level(model) -> list[tuple[str, object]]:
    net = getattr(model, 'net', None)
    if isinstance(net, nnx.Sequential):
        return [(f'net.{i}', layer) for i, layer in enumerate(net.layers)]
    return None


def layer_rows(model, input_shape, *, leaves: bool = False, dtype=jnp.float32) -> list[LayerRow]:
    """Rows of the layer table for an NHWC ``input_shape``.

    By default one row per child of the model's top-level ``net`` (as the course's
    ``layer_summary`` iterates ``self.net``); ``leaves=True`` (or a model without ``net``) gives
    one row per torch-named layer, in call order.
    """
    graphdef, state = nnx.split(model)
    top = None if leaves else _top_level(model)
    rows: list[LayerRow] = []

    def run(state, x):
        copy = nnx.merge(graphdef, state)
        copy.eval()
        if top is not None:
            for (name, _), layer in zip(top, copy.net.layers):
                x = layer(x)
                rows.append(
                    LayerRow(name, type(layer).__name__, tuple(x.shape), count_params(layer))
                )
            return x
        copy_names = {id(layer): name for name, layer in named_layers(copy)}

        def record(layer, y):
            rows.append(
                LayerRow(
                    copy_names.get(id(layer), '?'),
                    type(layer).__name__,
                    tuple(y.shape),
                    count_params(layer),
                )
            )

        with tap(record):
            return copy(x)

    with conv_lowering.lowering('heuristic'):  # shapes only: never autotune here
        jax.eval_shape(run, state, jax.ShapeDtypeStruct(tuple(input_shape), dtype))
    return rows


def layer_summary(
    model, input_shape, *, leaves: bool = False, channels_first: bool = True, print_fn=print
) -> list[LayerRow]:
    """Print the layer table (shapes in torch's NCHW order by default, like the notes)."""
    rows = layer_rows(model, input_shape, leaves=leaves)
    width = max(len(r.kind) for r in rows) + 2
    for r in rows:
        shape = r.torch_shape() if channels_first else r.shape
        print_fn(f'{r.kind + " output shape:":<{width + 14}}{tuple(shape)}    params: {r.params:,}')
    print_fn(f'total trainable parameters: {count_params(model):,}')
    return rows
