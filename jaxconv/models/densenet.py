"""DenseNet as the course's torch code computes it: growth 32, blocks (4, 4, 4, 4).

Channels after the transitions are 96, 112, 120 (each transition halves the accumulated
count); d2l's JAX port never accumulates and gets 96/96/96.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxconv.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from jaxconv.models.base import Classifier
from jaxconv.registry import register_model


def conv_block(in_channels, num_channels, *, rngs, dtype) -> Sequential:
    """BN-ReLU-conv3×3 (pre-activation)."""
    return Sequential(
        BatchNorm2d(in_channels, dtype=dtype),
        ReLU(),
        Conv2d(in_channels, num_channels, 3, padding=1, dtype=dtype, rngs=rngs),
    )


class DenseBlock(nnx.Module):
    """``num_convs`` conv blocks; each one's output is concatenated onto its input."""

    def __init__(self, num_convs, in_channels, growth_rate, *, rngs, dtype):
        self.net = Sequential(
            *[
                conv_block(in_channels + i * growth_rate, growth_rate, rngs=rngs, dtype=dtype)
                for i in range(num_convs)
            ]
        )
        self.out_channels = in_channels + num_convs * growth_rate

    def __call__(self, x):
        for blk in self.net.layers:
            x = jnp.concatenate([x, blk(x)], axis=-1)
        return x


def transition_block(in_channels, num_channels, *, rngs, dtype) -> Sequential:
    """BN-ReLU-conv1×1 to shrink channels, then a 2×2 average pool halving the resolution."""
    return Sequential(
        BatchNorm2d(in_channels, dtype=dtype),
        ReLU(),
        Conv2d(in_channels, num_channels, 1, dtype=dtype, rngs=rngs),
        AvgPool2d(2, stride=2),
    )


class DenseNet(Classifier):
    """``block_config`` is the number of conv blocks per dense block (torchvision's name)."""

    def __init__(
        self,
        *,
        arch,
        num_classes,
        in_channels,
        image_size,
        rngs,
        dtype,
        num_channels=64,
        growth_rate=32,
        block_config=(4, 4, 4, 4),
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        kw = dict(rngs=rngs, dtype=dtype)
        b1 = Sequential(
            Conv2d(in_channels, num_channels, 7, stride=2, padding=3, dtype=dtype, rngs=rngs),
            BatchNorm2d(num_channels, dtype=dtype),
            ReLU(),
            MaxPool2d(3, stride=2, padding=1),
        )
        blocks, c = [b1], num_channels
        transition_channels = []
        for i, num_convs in enumerate(block_config):
            blocks.append(DenseBlock(num_convs, c, growth_rate, **kw))
            c = blocks[-1].out_channels
            if i != len(block_config) - 1:
                c //= 2
                blocks.append(transition_block(blocks[-1].out_channels, c, **kw))
                transition_channels.append(c)
        last = Sequential(
            BatchNorm2d(c, dtype=dtype),
            ReLU(),
            AdaptiveAvgPool2d((1, 1)),
            Flatten(),
            Linear(c, num_classes, dtype=dtype, rngs=rngs),
        )
        self.net = Sequential(*blocks, last)
        self.transition_channels = tuple(transition_channels)  # static metadata: hashable
        self.require_image_size(self.net)


@register_model
def densenet(**kw) -> DenseNet:
    """DenseNet as the course's torch code builds it, Huang et al. 2016, arXiv:1608.06993."""
    return DenseNet(**kw)
