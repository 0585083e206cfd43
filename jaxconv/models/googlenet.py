"""d2l's simplified GoogLeNet: 9 Inception blocks, no auxiliary heads, global average pooling."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv.layers import AdaptiveAvgPool2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from jaxconv.models.base import Classifier
from jaxconv.registry import register_model


class Inception(nnx.Module):
    """Four parallel paths (1×1; 1×1→3×3; 1×1→5×5; 3×3 max-pool→1×1), concatenated on channels."""

    def __init__(self, in_channels, c1, c2, c3, c4, *, rngs, dtype):
        conv = partial(Conv2d, dtype=dtype, rngs=rngs)
        self.b1_1 = conv(in_channels, c1, 1)
        self.b2_1 = conv(in_channels, c2[0], 1)
        self.b2_2 = conv(c2[0], c2[1], 3, padding=1)
        self.b3_1 = conv(in_channels, c3[0], 1)
        self.b3_2 = conv(c3[0], c3[1], 5, padding=2)
        self.b4_1 = MaxPool2d(3, stride=1, padding=1)
        self.b4_2 = conv(in_channels, c4, 1)
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def __call__(self, x):
        relu = jax.nn.relu
        b1 = relu(self.b1_1(x))
        b2 = relu(self.b2_2(relu(self.b2_1(x))))
        b3 = relu(self.b3_2(relu(self.b3_1(x))))
        b4 = relu(self.b4_2(self.b4_1(x)))
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


# (c1, (c2_reduce, c2), (c3_reduce, c3), c4) per Inception block; 'M' is a 3×3/2 max-pool.
GOOGLENET_STAGES = (
    ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64), 'M'),
    (
        (192, (96, 208), (16, 48), 64),
        (160, (112, 224), (24, 64), 64),
        (128, (128, 256), (24, 64), 64),
        (112, (144, 288), (32, 64), 64),
        (256, (160, 320), (32, 128), 128),
        'M',
    ),
    ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128), 'GAP'),
)


class GoogLeNet(Classifier):
    def __init__(self, *, arch, num_classes, in_channels, image_size, rngs, dtype):
        super().__init__(arch, in_channels, image_size, dtype)
        conv = partial(Conv2d, dtype=dtype, rngs=rngs)
        b1 = Sequential(
            conv(in_channels, 64, 7, stride=2, padding=3), ReLU(), MaxPool2d(3, stride=2, padding=1)
        )
        b2 = Sequential(
            conv(64, 64, 1),
            ReLU(),
            conv(64, 192, 3, padding=1),
            ReLU(),
            MaxPool2d(3, stride=2, padding=1),
        )
        stages, c = [], 192
        for stage in GOOGLENET_STAGES:
            layers = []
            for spec in stage:
                if spec == 'M':
                    layers.append(MaxPool2d(3, stride=2, padding=1))
                elif spec == 'GAP':
                    layers += [AdaptiveAvgPool2d((1, 1)), Flatten()]
                else:
                    layers.append(Inception(c, *spec, rngs=rngs, dtype=dtype))
                    c = layers[-1].out_channels
            stages.append(Sequential(*layers))
        self.net = Sequential(b1, b2, *stages, Linear(c, num_classes, dtype=dtype, rngs=rngs))
        self.require_image_size(self.net)


@register_model
def googlenet(**kw) -> GoogLeNet:
    """GoogLeNet (Inception v1), Szegedy et al. 2014, https://arxiv.org/abs/1409.4842."""
    return GoogLeNet(**kw)
