"""LeNet-5 as d2l writes it: sigmoid activations and average pooling."""

from __future__ import annotations

from flax import nnx

from jaxconv.layers import AvgPool2d, Conv2d, Flatten, Linear, Sequential, Sigmoid
from jaxconv.models.base import Classifier, require_image_size
from jaxconv.registry import register_model


class LeNet(Classifier):
    arch = 'lenet'
    fixed_size = True

    def __init__(self, *, num_classes, in_channels, image_size, rngs, dtype):
        self.in_channels, self.image_size = in_channels, image_size
        features = [
            Conv2d(in_channels, 6, 5, padding=2, dtype=dtype, rngs=rngs), Sigmoid(),
            AvgPool2d(2, stride=2),
            Conv2d(6, 16, 5, dtype=dtype, rngs=rngs), Sigmoid(),
            AvgPool2d(2, stride=2),
            Flatten(),
        ]
        (_, d) = require_image_size(self.arch, Sequential(*features), image_size, in_channels, dtype)
        self.net = Sequential(
            *features,
            Linear(d, 120, dtype=dtype, rngs=rngs), Sigmoid(),
            Linear(120, 84, dtype=dtype, rngs=rngs), Sigmoid(),
            Linear(84, num_classes, dtype=dtype, rngs=rngs))

    def forward(self, x):
        return self.net(x)


@register_model
def lenet(**kw) -> nnx.Module:
    return LeNet(**kw)
