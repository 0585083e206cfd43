"""AlexNet as d2l writes it (96-256-384-384-256 convs, 4096-4096 FC with dropout)."""

from __future__ import annotations

from flax import nnx

from jaxconv.layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from jaxconv.models.base import Classifier, require_image_size
from jaxconv.registry import register_model


class AlexNet(Classifier):
    arch = 'alexnet'
    fixed_size = True

    def __init__(self, *, num_classes, in_channels, image_size, rngs, dtype, dropout: float = 0.5):
        self.in_channels, self.image_size = in_channels, image_size
        conv = lambda i, o, k, **kw: Conv2d(i, o, k, dtype=dtype, rngs=rngs, **kw)  # noqa: E731
        features = [
            conv(in_channels, 96, 11, stride=4, padding=1), ReLU(), MaxPool2d(3, stride=2),
            conv(96, 256, 5, padding=2), ReLU(), MaxPool2d(3, stride=2),
            conv(256, 384, 3, padding=1), ReLU(),
            conv(384, 384, 3, padding=1), ReLU(),
            conv(384, 256, 3, padding=1), ReLU(), MaxPool2d(3, stride=2),
            Flatten(),
        ]
        (_, d) = require_image_size(self.arch, Sequential(*features), image_size, in_channels, dtype)
        self.net = Sequential(
            *features,
            Linear(d, 4096, dtype=dtype, rngs=rngs), ReLU(), Dropout(dropout, rngs=rngs),
            Linear(4096, 4096, dtype=dtype, rngs=rngs), ReLU(), Dropout(dropout, rngs=rngs),
            Linear(4096, num_classes, dtype=dtype, rngs=rngs))

    def forward(self, x):
        return self.net(x)


@register_model
def alexnet(**kw) -> nnx.Module:
    return AlexNet(**kw)
