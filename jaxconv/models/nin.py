"""Network in Network: conv + two 1×1 convs per block, global average pooling instead of FC."""

from __future__ import annotations

from flax import nnx

from jaxconv.layers import AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, MaxPool2d, ReLU, Sequential
from jaxconv.models.base import Classifier, require_image_size
from jaxconv.registry import register_model


def nin_block(in_channels, out_channels, kernel_size, stride, padding, *, rngs, dtype) -> Sequential:
    conv = lambda i, k, **kw: Conv2d(i, out_channels, k, dtype=dtype, rngs=rngs, **kw)  # noqa: E731
    return Sequential(conv(in_channels, kernel_size, stride=stride, padding=padding), ReLU(),
                      conv(out_channels, 1), ReLU(), conv(out_channels, 1), ReLU())


class NiN(Classifier):
    arch = 'nin'

    def __init__(self, *, num_classes, in_channels, image_size, rngs, dtype, dropout: float = 0.5):
        self.in_channels, self.image_size = in_channels, image_size
        kw = dict(rngs=rngs, dtype=dtype)
        self.net = Sequential(
            nin_block(in_channels, 96, 11, 4, 0, **kw), MaxPool2d(3, stride=2),
            nin_block(96, 256, 5, 1, 2, **kw), MaxPool2d(3, stride=2),
            nin_block(256, 384, 3, 1, 1, **kw), MaxPool2d(3, stride=2),
            Dropout(dropout, rngs=rngs),
            nin_block(384, num_classes, 3, 1, 1, **kw),
            AdaptiveAvgPool2d((1, 1)), Flatten())
        require_image_size(self.arch, self.net, image_size, in_channels, dtype)

    def forward(self, x):
        return self.net(x)


@register_model
def nin(**kw) -> nnx.Module:
    return NiN(**kw)
