"""The VGG family as one table of ``(num_convs, out_channels)`` blocks (d2l's ``vgg_block``)."""

from __future__ import annotations

from functools import partial

from flax import nnx

from jaxconv.layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from jaxconv.models.base import Classifier, require_image_size
from jaxconv.registry import register_model

VGG_ARCHS = {
    'vgg11': ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),
    'vgg13': ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),
    'vgg16': ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    'vgg19': ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}


def vgg_block(num_convs: int, in_channels: int, out_channels: int, *, rngs, dtype) -> Sequential:
    """``num_convs`` × (3×3 conv, pad 1, ReLU), then a 2×2 max-pool of stride 2."""
    layers = []
    for _ in range(num_convs):
        layers += [Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype, rngs=rngs), ReLU()]
        in_channels = out_channels
    layers.append(MaxPool2d(2, stride=2))
    return Sequential(*layers)


class VGG(Classifier):
    fixed_size = True

    def __init__(self, arch, *, num_classes, in_channels, image_size, rngs, dtype,
                 name: str = 'vgg', dropout: float = 0.5):
        self.arch, self.in_channels, self.image_size = name, in_channels, image_size
        blocks, c = [], in_channels
        for num_convs, out_channels in arch:
            blocks.append(vgg_block(num_convs, c, out_channels, rngs=rngs, dtype=dtype))
            c = out_channels
        features = [*blocks, Flatten()]
        (_, d) = require_image_size(name, Sequential(*features), image_size, in_channels, dtype)
        self.net = Sequential(
            *features,
            Linear(d, 4096, dtype=dtype, rngs=rngs), ReLU(), Dropout(dropout, rngs=rngs),
            Linear(4096, 4096, dtype=dtype, rngs=rngs), ReLU(), Dropout(dropout, rngs=rngs),
            Linear(4096, num_classes, dtype=dtype, rngs=rngs))

    def forward(self, x):
        return self.net(x)


for _name, _arch in VGG_ARCHS.items():
    register_model(partial(VGG, _arch, name=_name), name=_name)
