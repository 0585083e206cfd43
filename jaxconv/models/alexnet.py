"""AlexNet as d2l writes it (96-256-384-384-256 convs, 4096-4096 FC with dropout)."""

from __future__ import annotations

from functools import partial

from jaxconv.layers import Conv2d, Flatten, MaxPool2d, ReLU, Sequential
from jaxconv.models.base import Classifier, fc_head
from jaxconv.registry import register_model


class AlexNet(Classifier):
    fixed_size = True

    def __init__(
        self, *, arch, num_classes, in_channels, image_size, rngs, dtype, dropout: float = 0.5
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        conv = partial(Conv2d, dtype=dtype, rngs=rngs)
        features = [
            conv(in_channels, 96, 11, stride=4, padding=1),
            ReLU(),
            MaxPool2d(3, stride=2),
            conv(96, 256, 5, padding=2),
            ReLU(),
            MaxPool2d(3, stride=2),
            conv(256, 384, 3, padding=1),
            ReLU(),
            conv(384, 384, 3, padding=1),
            ReLU(),
            conv(384, 256, 3, padding=1),
            ReLU(),
            MaxPool2d(3, stride=2),
            Flatten(),
        ]
        (_, d) = self.require_image_size(Sequential(*features))
        self.net = Sequential(
            *features, *fc_head(d, num_classes, dropout=dropout, rngs=rngs, dtype=dtype)
        )


@register_model
def alexnet(**kw) -> AlexNet:
    """AlexNet, Krizhevsky et al. 2012, https://doi.org/10.1145/3065386."""
    return AlexNet(**kw)
