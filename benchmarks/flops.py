"""FLOPs of a model counted from its layer shapes (lowering-independent, the same for torch).

The model is traced with ``jax.eval_shape`` (nothing is computed) while every convolution is
recorded by ``jaxconv.conv_lowering.recording`` and every ``Linear`` by a tap. A layer's
multiply-accumulates are ``N·H'·W'·C_out·(C_in/groups)·kh·kw`` (conv) and ``N·in·out``
(linear); the forward costs 2 FLOPs per MAC and a train step 3× the forward (forward, input
gradient, weight gradient; the first layer's unneeded input gradient is counted too, as is
customary). Pools, norms and activations are left out: they are memory-bound and a small
fraction of the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv import conv_lowering
from jaxconv.layers import Linear, tap
from jaxconv.models import create_model


@dataclass(frozen=True)
class LayerShape:
    kind: str  # 'conv' or 'linear'
    geometry: (
        tuple  # conv: (N, H, W, C_in, C_out, kh, kw, stride, padding, groups); linear: (N, in, out)
    )
    macs: int
    plan: conv_lowering.Plan | None = None


def layer_shapes(
    arch: str, image_size: int, batch: int, in_channels: int = 3, num_classes: int = 10
) -> list[LayerShape]:
    """Every Conv2d (in call order) then every Linear of ``arch`` at this input size."""
    model = create_model(
        arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size
    )
    model.eval()
    graphdef, state = nnx.split(model)
    linears: list[LayerShape] = []

    def record_linear(layer, y):
        if isinstance(layer, Linear):
            rows = math.prod(y.shape[:-1])
            linears.append(
                LayerShape(
                    'linear',
                    (rows, layer.in_features, layer.out_features),
                    rows * layer.in_features * layer.out_features,
                )
            )

    def apply(state, x):
        with tap(record_linear):
            return nnx.merge(graphdef, state)(x)

    # Shapes only: the fixed rules, so that counting FLOPs never starts autotuning.
    with conv_lowering.lowering('heuristic'), conv_lowering.recording() as convs:
        jax.eval_shape(
            apply,
            state,
            jax.ShapeDtypeStruct((batch, image_size, image_size, in_channels), jnp.float32),
        )
    found = []
    for call in convs:
        n, h, w, cin = call.x_shape
        kh, kw, cig, cout = call.w_shape
        y = jax.eval_shape(
            lambda x, k, s=call.spec: conv_lowering.conv_xla(x, k, s),
            jax.ShapeDtypeStruct(call.x_shape, jnp.float32),
            jax.ShapeDtypeStruct(call.w_shape, jnp.float32),
        )
        geometry = (
            n,
            h,
            w,
            cin,
            cout,
            kh,
            kw,
            call.spec.stride,
            call.spec.padding,
            call.spec.groups,
        )
        found.append(LayerShape('conv', geometry, math.prod(y.shape) * cig * kh * kw, call.plan))
    return found + linears


def flops_per_image(arch: str, image_size: int, in_channels: int = 3) -> tuple[float, float]:
    """(forward FLOPs, train-step FLOPs) per image."""
    macs = sum(layer.macs for layer in layer_shapes(arch, image_size, 1, in_channels))
    return 2.0 * macs, 6.0 * macs
