"""ResNet (d2l's Residual block) and ResNeXt (grouped bottleneck), as ``(stages, block)`` tables."""

from __future__ import annotations

from functools import partial

import jax
from flax import nnx

from jaxconv.layers import (
    AdaptiveAvgPool2d,
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


class Residual(nnx.Module):
    """d2l's Residual: conv3-BN-ReLU-conv3-BN, plus x (through a strided 1×1 conv if asked),
    ReLU."""

    def __init__(self, in_channels, num_channels, use_1x1conv=False, strides=1, *, rngs, dtype):
        conv = partial(Conv2d, dtype=dtype, rngs=rngs)
        self.conv1 = conv(in_channels, num_channels, 3, stride=strides, padding=1)
        self.conv2 = conv(num_channels, num_channels, 3, padding=1)
        self.conv3 = conv(in_channels, num_channels, 1, stride=strides) if use_1x1conv else None
        self.bn1 = BatchNorm2d(num_channels, dtype=dtype)
        self.bn2 = BatchNorm2d(num_channels, dtype=dtype)

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        return jax.nn.relu(y + x)


class ResNeXtBlock(nnx.Module):
    """d2l's ResNeXt block, with ``groups`` meaning the NUMBER of groups (cardinality).

    1×1 conv to ``round(num_channels · bot_mul)`` channels, 3×3 grouped conv, 1×1 conv back, each
    with BN; the shortcut is a strided 1×1 conv + BN when the shape changes. (d2l passes
    ``bot_channels // groups`` as torch's ``groups``, i.e. treats it as the group width.)
    """

    def __init__(
        self,
        in_channels,
        num_channels,
        use_1x1conv=False,
        strides=1,
        *,
        groups=32,
        bot_mul=1.0,
        rngs,
        dtype,
    ):
        bot = int(round(num_channels * bot_mul))
        if bot % groups:
            raise ValueError(f'bottleneck width {bot} is not divisible by groups={groups}')
        conv = partial(Conv2d, dtype=dtype, rngs=rngs)
        self.conv1 = conv(in_channels, bot, 1)
        self.conv2 = conv(bot, bot, 3, stride=strides, padding=1, groups=groups)
        self.conv3 = conv(bot, num_channels, 1)
        self.bn1 = BatchNorm2d(bot, dtype=dtype)
        self.bn2 = BatchNorm2d(bot, dtype=dtype)
        self.bn3 = BatchNorm2d(num_channels, dtype=dtype)
        if use_1x1conv:
            self.conv4 = conv(in_channels, num_channels, 1, stride=strides)
            self.bn4 = BatchNorm2d(num_channels, dtype=dtype)
        else:
            self.conv4 = self.bn4 = None

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = jax.nn.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.conv4 is not None:
            x = self.bn4(self.conv4(x))
        return jax.nn.relu(y + x)


class ResNet(Classifier):
    """Stem (conv7/2, BN, ReLU, max-pool 3/2), stages of blocks, adaptive average pool, Linear.

    ``stages`` is ((num_blocks, channels), ...); the first block of every stage but the first
    halves the resolution through a strided 1×1 shortcut, as d2l's ``block(first_block=...)``.
    """

    def __init__(
        self, stages, block, *, arch, num_classes, in_channels, image_size, rngs, dtype, **block_kw
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        block = partial(block, rngs=rngs, dtype=dtype, **block_kw)
        b1 = Sequential(
            Conv2d(in_channels, 64, 7, stride=2, padding=3, dtype=dtype, rngs=rngs),
            BatchNorm2d(64, dtype=dtype),
            ReLU(),
            MaxPool2d(3, stride=2, padding=1),
        )
        stage_modules, c = [], 64
        for i, (num_blocks, channels) in enumerate(stages):
            blocks = []
            for j in range(num_blocks):
                if j == 0 and i > 0:
                    blocks.append(block(c, channels, use_1x1conv=True, strides=2))
                else:
                    blocks.append(block(c, channels, use_1x1conv=(c != channels)))
                c = channels
            stage_modules.append(Sequential(*blocks))
        last = Sequential(
            AdaptiveAvgPool2d((1, 1)), Flatten(), Linear(c, num_classes, dtype=dtype, rngs=rngs)
        )
        self.net = Sequential(b1, *stage_modules, last)
        self.require_image_size(self.net)


# ((num_blocks, channels), ...) per stage.
RESNET_STAGES = {
    'resnet18': ((2, 64), (2, 128), (2, 256), (2, 512)),
    'resnet34': ((3, 64), (4, 128), (6, 256), (3, 512)),
}


@register_model
def resnet18(**kw) -> ResNet:
    """ResNet-18 of d2l's Residual blocks, He et al. 2015, https://arxiv.org/abs/1512.03385."""
    return ResNet(RESNET_STAGES['resnet18'], Residual, **kw)


@register_model
def resnet34(**kw) -> ResNet:
    """ResNet-34 of d2l's Residual blocks, He et al. 2015, https://arxiv.org/abs/1512.03385."""
    return ResNet(RESNET_STAGES['resnet34'], Residual, **kw)


@register_model
def resnext(*, groups: int = 32, bot_mul: float = 1.0, **kw) -> ResNet:
    """ResNet-18's stages of ResNeXt blocks, Xie et al. 2016, https://arxiv.org/abs/1611.05431."""
    return ResNet(RESNET_STAGES['resnet18'], ResNeXtBlock, groups=groups, bot_mul=bot_mul, **kw)
