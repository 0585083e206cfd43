"""Network in Network: conv + two 1×1 convs per block, global average pooling instead of FC."""

from __future__ import annotations

from functools import partial

from jaxconv.layers import AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, MaxPool2d, ReLU, Sequential
from jaxconv.models.base import Classifier
from jaxconv.registry import register_model


def nin_block(
    in_channels, out_channels, kernel_size, stride, padding, *, rngs, dtype
) -> Sequential:
    """A conv, then two 1×1 convs acting as a per-pixel MLP, each followed by ReLU."""
    conv = partial(Conv2d, out_channels=out_channels, dtype=dtype, rngs=rngs)
    return Sequential(
        conv(in_channels, kernel_size=kernel_size, stride=stride, padding=padding),
        ReLU(),
        conv(out_channels, kernel_size=1),
        ReLU(),
        conv(out_channels, kernel_size=1),
        ReLU(),
    )


class NiN(Classifier):
    def __init__(
        self, *, arch, num_classes, in_channels, image_size, rngs, dtype, dropout: float = 0.5
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        kw = dict(rngs=rngs, dtype=dtype)
        self.net = Sequential(
            nin_block(in_channels, 96, 11, 4, 0, **kw),
            MaxPool2d(3, stride=2),
            nin_block(96, 256, 5, 1, 2, **kw),
            MaxPool2d(3, stride=2),
            nin_block(256, 384, 3, 1, 1, **kw),
            MaxPool2d(3, stride=2),
            Dropout(dropout, rngs=rngs),
            nin_block(384, num_classes, 3, 1, 1, **kw),
            AdaptiveAvgPool2d((1, 1)),
            Flatten(),
        )
        self.require_image_size(self.net)


@register_model
def nin(**kw) -> NiN:
    """Network in Network, Lin et al. 2013, https://arxiv.org/abs/1312.4400."""
    return NiN(**kw)
