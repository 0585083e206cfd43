"""LeNet-5 as d2l writes it: sigmoid activations and average pooling."""

from __future__ import annotations

from jaxconv.layers import AvgPool2d, Conv2d, Flatten, Linear, Sequential, Sigmoid
from jaxconv.models.base import Classifier
from jaxconv.registry import register_model


class LeNet(Classifier):
    fixed_size = True

    def __init__(self, *, arch, num_classes, in_channels, image_size, rngs, dtype):
        super().__init__(arch, in_channels, image_size, dtype)
        features = [
            Conv2d(in_channels, 6, 5, padding=2, dtype=dtype, rngs=rngs),
            Sigmoid(),
            AvgPool2d(2, stride=2),
            Conv2d(6, 16, 5, dtype=dtype, rngs=rngs),
            Sigmoid(),
            AvgPool2d(2, stride=2),
            Flatten(),
        ]
        (_, d) = self.require_image_size(Sequential(*features))
        self.net = Sequential(
            *features,
            Linear(d, 120, dtype=dtype, rngs=rngs),
            Sigmoid(),
            Linear(120, 84, dtype=dtype, rngs=rngs),
            Sigmoid(),
            Linear(84, num_classes, dtype=dtype, rngs=rngs),
        )


@register_model
def lenet(**kw) -> LeNet:
    """LeNet-5, LeCun et al. 1998, https://doi.org/10.1109/5.726791."""
    return LeNet(**kw)
