"""PyTorch twins of the registered models, written like the course's torch code.

Each twin has the same module tree as its Flax model (the same attribute names, the same
``nn.Sequential`` indices), so the key map between the two is the identity on names and only
the layouts change (see ``parity.transfer``). Initialisation does not matter: weights are
copied across before any comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

_TWINS: dict[str, Callable[..., nn.Module]] = {}


def register_twin(name: str):
    def wrap(fn):
        _TWINS[name] = fn
        return fn

    return wrap


def torch_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    dtype: torch.dtype | None = None,
    **kw,
) -> nn.Module:
    """The torch twin of ``jaxconv.models.create_model(name, ...)`` with the same arguments."""
    if name not in _TWINS:
        raise ValueError(
            f'no torch twin for {name!r}; twins exist for: {", ".join(sorted(_TWINS))}'
        )
    model = _TWINS[name](
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw
    )
    if dtype is not None:
        model = model.to(dtype)
    return model


def list_twins() -> list[str]:
    return sorted(_TWINS)


def _flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, in_channels, image_size, image_size)).shape[1]


# ---- MLPs ------------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, hidden=512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size**2, hidden),
            nn.Tanh(),
            nn.Linear(hidden, num_classes),
            nn.LogSoftmax(dim=1),
        )

    def forward(self, x):
        return self.net(x)


class DropoutMLP(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, depth=3, width=100, dropout=0.5):
        super().__init__()
        layers, d = [nn.Flatten()], in_channels * image_size**2
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.ReLU(), nn.Dropout(dropout)]
            d = width
        self.net = nn.Sequential(*layers, nn.Linear(d, num_classes))

    def forward(self, x):
        return self.net(x)


register_twin('mlp')(MLP)
register_twin('mlp_dropout')(DropoutMLP)


# ---- LeNet, AlexNet, VGG, NiN ----------------------------------------------------------------
class LeNet(nn.Module):
    def __init__(self, num_classes, in_channels, image_size):
        super().__init__()
        features = [
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
        ]
        d = _flat_features(nn.Sequential(*features), in_channels, image_size)
        self.net = nn.Sequential(
            *features,
            nn.Linear(d, 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.net(x)


class AlexNet(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, dropout=0.5):
        super().__init__()
        features = [
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Flatten(),
        ]
        d = _flat_features(nn.Sequential(*features), in_channels, image_size)
        self.net = nn.Sequential(
            *features,
            nn.Linear(d, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.net(x)


def vgg_block(num_convs, in_channels, out_channels, batch_norm=False):
    layers = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    def __init__(self, cfg, num_classes, in_channels, image_size, dropout=0.5, batch_norm=False):
        super().__init__()
        blocks, c = [], in_channels
        for num_convs, out_channels in cfg:
            blocks.append(vgg_block(num_convs, c, out_channels, batch_norm))
            c = out_channels
        d = _flat_features(nn.Sequential(*blocks, nn.Flatten()), in_channels, image_size)
        self.net = nn.Sequential(
            *blocks,
            nn.Flatten(),
            nn.Linear(d, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.net(x)


def _register_vggs():
    from jaxconv.models.vgg import VGG_CFGS

    for name, cfg in VGG_CFGS.items():
        register_twin(name)(partial(VGG, cfg))
    register_twin('vgg11_bn')(partial(VGG, VGG_CFGS['vgg11'], batch_norm=True))


_register_vggs()


def nin_block(in_channels, out_channels, kernel_size, strides, padding):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
    )


class NiN(nn.Module):
    def __init__(self, num_classes, in_channels, image_size, dropout=0.5):
        super().__init__()
        self.net = nn.Sequential(
            nin_block(in_channels, 96, kernel_size=11, strides=4, padding=0),
            nn.MaxPool2d(3, stride=2),
            nin_block(96, 256, kernel_size=5, strides=1, padding=2),
            nn.MaxPool2d(3, stride=2),
            nin_block(256, 384, kernel_size=3, strides=1, padding=1),
            nn.MaxPool2d(3, stride=2),
            nn.Dropout(dropout),
            nin_block(384, num_classes, kernel_size=3, strides=1, padding=1),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
        )

    def forward(self, x):
        return self.net(x)


register_twin('lenet')(LeNet)
register_twin('alexnet')(AlexNet)
register_twin('nin')(NiN)


# ---- GoogLeNet --------------------------------------------------------------------------------
class Inception(nn.Module):
    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.b1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.b2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.b2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.b3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.b3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.b4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x):
        b1 = F.relu(self.b1_1(x))
        b2 = F.relu(self.b2_2(F.relu(self.b2_1(x))))
        b3 = F.relu(self.b3_2(F.relu(self.b3_1(x))))
        b4 = F.relu(self.b4_2(self.b4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes, in_channels, image_size):
        super().__init__()
        from jaxconv.models.googlenet import GOOGLENET_STAGES

        b1 = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        b2 = nn.Sequential(
            nn.Conv2d(64, 64, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(64, 192, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages, c = [], 192
        for stage in GOOGLENET_STAGES:
            layers = []
            for spec in stage:
                if spec == 'M':
                    layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
                elif spec == 'GAP':
                    layers += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()]
                else:
                    layers.append(Inception(c, *spec))
                    c = layers[-1].out_channels
            stages.append(nn.Sequential(*layers))
        self.net = nn.Sequential(b1, b2, *stages, nn.Linear(c, num_classes))

    def forward(self, x):
        return self.net(x)


register_twin('googlenet')(GoogLeNet)


# ---- ResNet / ResNeXt -------------------------------------------------------------------------
class Residual(nn.Module):
    """The course's Residual block (d2l 8.6), with explicit in_channels instead of Lazy layers."""

    def __init__(self, in_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = (
            nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides)
            if use_1x1conv
            else None
        )
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return F.relu(Y)


class ResNeXtBlock(nn.Module):
    """d2l's ResNeXt block with ``groups`` as the number of groups (torch's meaning)."""

    def __init__(
        self, in_channels, num_channels, use_1x1conv=False, strides=1, groups=32, bot_mul=1.0
    ):
        super().__init__()
        bot = int(round(num_channels * bot_mul))
        self.conv1 = nn.Conv2d(in_channels, bot, kernel_size=1, stride=1)
        self.conv2 = nn.Conv2d(bot, bot, kernel_size=3, stride=strides, padding=1, groups=groups)
        self.conv3 = nn.Conv2d(bot, num_channels, kernel_size=1, stride=1)
        self.bn1 = nn.BatchNorm2d(bot)
        self.bn2 = nn.BatchNorm2d(bot)
        self.bn3 = nn.BatchNorm2d(num_channels)
        if use_1x1conv:
            self.conv4 = nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides)
            self.bn4 = nn.BatchNorm2d(num_channels)
        else:
            self.conv4 = None
            self.bn4 = None

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = F.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4:
            X = self.bn4(self.conv4(X))
        return F.relu(Y + X)


class ResNet(nn.Module):
    def __init__(self, stages, block, num_classes, in_channels, image_size, **block_kw):
        super().__init__()
        b1 = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        blks, c = [], 64
        for i, (num_blocks, channels) in enumerate(stages):
            blk = []
            for j in range(num_blocks):
                if j == 0 and i > 0:
                    blk.append(block(c, channels, use_1x1conv=True, strides=2, **block_kw))
                else:
                    blk.append(block(c, channels, use_1x1conv=(c != channels), **block_kw))
                c = channels
            blks.append(nn.Sequential(*blk))
        last = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(c, num_classes))
        self.net = nn.Sequential(b1, *blks, last)

    def forward(self, x):
        return self.net(x)


def _register_resnets():
    # The twins of ``jaxconv.models.resnet``'s builders, with the same stage tables.
    from jaxconv.models.resnet import RESNET_STAGES

    register_twin('resnet18')(partial(ResNet, RESNET_STAGES['resnet18'], Residual))
    register_twin('resnet34')(partial(ResNet, RESNET_STAGES['resnet34'], Residual))
    register_twin('resnext')(
        partial(ResNet, RESNET_STAGES['resnet18'], ResNeXtBlock, groups=32, bot_mul=1.0)
    )


_register_resnets()


# ---- DenseNet ---------------------------------------------------------------------------------
def conv_block(in_channels, num_channels):
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1),
    )


class DenseBlock(nn.Module):
    def __init__(self, num_convs, in_channels, num_channels):
        super().__init__()
        self.net = nn.Sequential(
            *[conv_block(in_channels + i * num_channels, num_channels) for i in range(num_convs)]
        )
        self.out_channels = in_channels + num_convs * num_channels

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            X = torch.cat((X, Y), dim=1)  # concatenate input and output on the channels
        return X


def transition_block(in_channels, num_channels):
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2),
    )


class DenseNet(nn.Module):
    def __init__(
        self,
        num_classes,
        in_channels,
        image_size,
        num_channels=64,
        growth_rate=32,
        block_config=(4, 4, 4, 4),
    ):
        super().__init__()
        blocks = [
            nn.Sequential(
                nn.Conv2d(in_channels, num_channels, kernel_size=7, stride=2, padding=3),
                nn.BatchNorm2d(num_channels),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        ]
        for i, num_convs in enumerate(block_config):
            blocks.append(DenseBlock(num_convs, num_channels, growth_rate))
            num_channels += num_convs * growth_rate  # the torch code accumulates channels
            if i != len(block_config) - 1:
                blocks.append(transition_block(num_channels, num_channels // 2))
                num_channels //= 2
        last = nn.Sequential(
            nn.BatchNorm2d(num_channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(num_channels, num_classes),
        )
        self.net = nn.Sequential(*blocks, last)

    def forward(self, x):
        return self.net(x)


register_twin('densenet')(DenseNet)
