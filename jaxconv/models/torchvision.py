"""torchvision's classification architectures, layer for layer, so its checkpoints load as-is.

Each model here has torchvision's exact module tree: ``jaxconv.layers.named_layers`` yields
torchvision's ``state_dict`` names (``features.denseblock1.denselayer1.norm1``,
``layer1.0.downsample.0``, ``inception3a.branch2.0.conv`` ...), so
``parity.to_flax(torchvision.models.resnet18(), create_model('tv_resnet18', num_classes=1000,
image_size=224))`` copies every tensor of the state_dict, whether freshly built or
``torch.load``-ed from an ImageNet checkpoint. Registered names: ``tv_alexnet``, ``tv_vgg11``,
``tv_vgg11_bn``, ``tv_googlenet``, ``tv_resnet18``, ``tv_resnext50_32x4d``, ``tv_densenet121``.

What torchvision does functionally (``torch.flatten``, ``F.relu``, ``F.adaptive_avg_pool2d``)
is done functionally here too, so the Flax tree has no layer that torch's ``named_modules``
lacks. Every head ends in an adaptive pool, so the models accept any input size at or above
the architecture's minimum, square or not; ``image_size`` only sets the size checked when
the model is built.

Weights are initialised with the course default (xavier-uniform kernels, torch's uniform
biases, BatchNorm at 1/0), not torchvision's kaiming/truncated-normal schemes: these models
are meant to receive torchvision's weights. Extra keyword arguments carry torchvision's names
(``dropout``, ``aux_logits``, ``transform_input``, ``dropout_aux``), so the same keywords
build the Flax model and its torchvision twin (``parity.tv``).
"""

from __future__ import annotations

from collections import namedtuple
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from jaxconv.models.base import Classifier, fc_head
from jaxconv.registry import register_model


# --------------------------------------------------------------------------------------------
# Functional forms: torchvision calls these as functions, so they must not become named layers
# (a named layer torch lacks would show up in per-layer reports and summaries).
# --------------------------------------------------------------------------------------------
def flatten(x):
    """``torch.flatten(x, 1)`` of an NHWC map, in torch's C·H·W order."""
    return Flatten().forward(x)


def adaptive_avg_pool2d(x, output_size):
    """``F.adaptive_avg_pool2d`` with torch's bins (x: (N, H, W, C))."""
    return AdaptiveAvgPool2d(output_size).forward(x)


class NamedSequential(nnx.Module):
    """``nn.Sequential(OrderedDict(...))``: children run in order under their torch names.

    torchvision names the children of some Sequentials (DenseNet's ``features.conv0`` ...,
    ``_Transition``'s ``norm``/``relu``/``conv``/``pool``); ``nnx.Sequential`` only has
    indices. Each child becomes an attribute of that name, and ``named_layers`` walks
    attributes in insertion order, so the state_dict names come out as torch's.
    """

    def __init__(self, **children: nnx.Module):
        for name, child in children.items():
            setattr(self, name, child)
        self._child_names = tuple(children)

    def __call__(self, x):
        for name in self._child_names:
            x = getattr(self, name)(x)
        return x


# --------------------------------------------------------------------------------------------
# AlexNet and VGG: features, an adaptive average pool to a fixed grid, a 3-layer classifier
# --------------------------------------------------------------------------------------------
class AlexNet(Classifier):
    """torchvision's AlexNet (the "one weird trick" 64-192-384-256-256 variant).

    features → AdaptiveAvgPool2d((6, 6)) → flatten (C·H·W) → classifier
    (Dropout, Linear 9216→4096, ReLU, Dropout, Linear, ReLU, Linear).
    """

    def __init__(
        self, *, arch, num_classes, in_channels, image_size, rngs, dtype, dropout: float = 0.5
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        conv = partial(Conv2d, dtype=dtype, rngs=rngs)
        self.features = Sequential(
            conv(in_channels, 64, 11, stride=4, padding=2),
            ReLU(),
            MaxPool2d(3, stride=2),
            conv(64, 192, 5, padding=2),
            ReLU(),
            MaxPool2d(3, stride=2),
            conv(192, 384, 3, padding=1),
            ReLU(),
            conv(384, 256, 3, padding=1),
            ReLU(),
            conv(256, 256, 3, padding=1),
            ReLU(),
            MaxPool2d(3, stride=2),
        )
        # Checked before the 58M-parameter classifier is built, so a too-small size fails fast.
        self.require_image_size(self.features)
        self.avgpool = AdaptiveAvgPool2d((6, 6))
        linear = partial(Linear, dtype=dtype, rngs=rngs)
        self.classifier = Sequential(
            Dropout(dropout, rngs=rngs),
            linear(256 * 6 * 6, 4096),
            ReLU(),
            Dropout(dropout, rngs=rngs),
            linear(4096, 4096),
            ReLU(),
            linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(flatten(self.avgpool(self.features(x))))


# torchvision's ``cfgs``: output channels of the 3×3 convs, 'M' a 2×2/2 max-pool.
VGG_CFGS = {
    'A': (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),  # VGG-11
}


def vgg_features(cfg, in_channels, batch_norm: bool, *, rngs, dtype) -> Sequential:
    """torchvision's ``make_layers``: conv3×3 (pad 1) [+ BatchNorm] + ReLU per entry, 'M' pools."""
    layers = []
    for v in cfg:
        if v == 'M':
            layers.append(MaxPool2d(2, stride=2))
            continue
        layers.append(Conv2d(in_channels, v, 3, padding=1, dtype=dtype, rngs=rngs))
        if batch_norm:
            layers.append(BatchNorm2d(v, dtype=dtype))
        layers.append(ReLU())
        in_channels = v
    return Sequential(*layers)


class VGG(Classifier):
    """torchvision's VGG: features → AdaptiveAvgPool2d((7, 7)) → flatten (C·H·W) → classifier.

    classifier = (Linear 25088→4096, ReLU, Dropout, Linear 4096→4096, ReLU, Dropout,
    Linear 4096→num_classes), with torchvision's indices.
    """

    def __init__(
        self,
        cfg,
        *,
        arch,
        num_classes,
        in_channels,
        image_size,
        rngs,
        dtype,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        self.features = vgg_features(cfg, in_channels, batch_norm, rngs=rngs, dtype=dtype)
        # Checked before the 120M-parameter classifier is built, so a too-small size fails fast.
        self.require_image_size(self.features)
        self.avgpool = AdaptiveAvgPool2d((7, 7))
        self.classifier = Sequential(
            *fc_head(512 * 7 * 7, num_classes, dropout=dropout, rngs=rngs, dtype=dtype)
        )

    def forward(self, x):
        return self.classifier(flatten(self.avgpool(self.features(x))))


# --------------------------------------------------------------------------------------------
# GoogLeNet (Inception v1), with torchvision's auxiliary heads and input transform
# --------------------------------------------------------------------------------------------
GoogLeNetOutputs = namedtuple('GoogLeNetOutputs', ['logits', 'aux_logits2', 'aux_logits1'])
GoogLeNetOutputs.__doc__ = "torchvision's training-mode result: logits, then aux2's, then aux1's."


class BasicConv2d(nnx.Module):
    """conv (no bias) → BatchNorm (eps = 0.001, as torchvision's GoogLeNet) → ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, rngs, dtype):
        self.conv = Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            bias=False,
            dtype=dtype,
            rngs=rngs,
        )
        self.bn = BatchNorm2d(out_channels, eps=0.001, dtype=dtype)

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


class Inception(nnx.Module):
    """Four branches concatenated on channels: 1×1; 1×1→3×3; 1×1→"5×5"; 3×3 max-pool→1×1.

    The "5×5" branch has a 3×3 kernel in torchvision (its known bug, pytorch/vision#906); the
    ImageNet weights were trained that way, so it is kept.
    """

    def __init__(
        self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, *, rngs, dtype
    ):
        conv = partial(BasicConv2d, rngs=rngs, dtype=dtype)
        self.branch1 = conv(in_channels, ch1x1, 1)
        self.branch2 = Sequential(
            conv(in_channels, ch3x3red, 1), conv(ch3x3red, ch3x3, 3, padding=1)
        )
        self.branch3 = Sequential(
            conv(in_channels, ch5x5red, 1), conv(ch5x5red, ch5x5, 3, padding=1)
        )
        self.branch4 = Sequential(
            MaxPool2d(3, stride=1, padding=1, ceil_mode=True), conv(in_channels, pool_proj, 1)
        )

    def __call__(self, x):
        return jnp.concatenate(
            [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], axis=-1
        )


class InceptionAux(nnx.Module):
    """Aux head: adaptive pool to 4×4 → 1×1 conv to 128 → fc1 (2048→1024) → ReLU → dropout → fc2.

    Its flatten is torch's C·H·W order, so fc1 takes torchvision's weight with a plain transpose.
    """

    def __init__(self, in_channels, num_classes, *, dropout: float = 0.7, rngs, dtype):
        self.conv = BasicConv2d(in_channels, 128, 1, rngs=rngs, dtype=dtype)
        self.fc1 = Linear(2048, 1024, dtype=dtype, rngs=rngs)
        self.fc2 = Linear(1024, num_classes, dtype=dtype, rngs=rngs)
        self.dropout = Dropout(dropout, rngs=rngs)

    def __call__(self, x):
        x = flatten(self.conv(adaptive_avg_pool2d(x, (4, 4))))
        return self.fc2(self.dropout(jax.nn.relu(self.fc1(x))))


# (in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) per Inception block, torchvision's table.
GOOGLENET_INCEPTIONS = {
    'inception3a': (192, 64, 96, 128, 16, 32, 32),
    'inception3b': (256, 128, 128, 192, 32, 96, 64),
    'inception4a': (480, 192, 96, 208, 16, 48, 64),
    'inception4b': (512, 160, 112, 224, 24, 64, 64),
    'inception4c': (512, 128, 128, 256, 24, 64, 64),
    'inception4d': (512, 112, 144, 288, 32, 64, 64),
    'inception4e': (528, 256, 160, 320, 32, 128, 128),
    'inception5a': (832, 256, 160, 320, 32, 128, 128),
    'inception5b': (832, 384, 192, 384, 48, 128, 128),
}

# ``transform_input``: re-normalise an ImageNet-normalised input to the (x - 0.5) / 0.5 scale
# the ported Inception weights expect: x · std / 0.5 + (mean - 0.5) / 0.5 per channel.
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class GoogLeNet(Classifier):
    """torchvision's GoogLeNet, with its training-mode auxiliary heads.

    Eval mode (``model.eval()``) returns the logits (N, num_classes), as torchvision does. In
    training mode (the state a new model starts in, as in torch) with ``aux_logits=True`` (the
    default, as ``torchvision.models.googlenet()``), it returns
    ``GoogLeNetOutputs(logits, aux_logits2, aux_logits1)``, torchvision's namedtuple in
    torchvision's field order; a loss combines them as the paper does (e.g.
    ``ce(logits) + 0.3 · (ce(aux_logits1) + ce(aux_logits2))``). ``aux_logits=False`` drops
    the heads (and their parameters) and always returns logits. ``transform_input=True``
    matches ``googlenet(weights=...)``, which turns it on for the ImageNet checkpoint.
    """

    def __init__(
        self,
        *,
        arch,
        num_classes,
        in_channels,
        image_size,
        rngs,
        dtype,
        aux_logits: bool = True,
        transform_input: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ):
        if transform_input and in_channels != 3:
            raise ValueError(
                f'transform_input re-normalises 3 ImageNet channels; got in_channels={in_channels}'
            )
        super().__init__(arch, in_channels, image_size, dtype)
        self.aux_logits, self.transform_input = aux_logits, transform_input
        # Training-mode flag, flipped by model.train() / model.eval() like Dropout's
        # (torchvision's ``self.training``): the aux heads run only in training mode.
        self.deterministic = False
        conv = partial(BasicConv2d, rngs=rngs, dtype=dtype)
        self.conv1 = conv(in_channels, 64, 7, stride=2, padding=3)
        self.maxpool1 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv(64, 64, 1)
        self.conv3 = conv(64, 192, 3, padding=1)
        self.maxpool2 = MaxPool2d(3, stride=2, ceil_mode=True)
        for name, spec in GOOGLENET_INCEPTIONS.items():
            setattr(self, name, Inception(*spec, rngs=rngs, dtype=dtype))
            if name == 'inception3b':
                self.maxpool3 = MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == 'inception4e':
                self.maxpool4 = MaxPool2d(2, stride=2, ceil_mode=True)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux, rngs=rngs, dtype=dtype)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux, rngs=rngs, dtype=dtype)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.dropout = Dropout(dropout, rngs=rngs)
        self.fc = Linear(1024, num_classes, dtype=dtype, rngs=rngs)
        self.require_image_size(self)

    def _transform_input(self, x):
        if not self.transform_input:
            return x
        mean, std = jnp.asarray(_IMAGENET_MEAN, x.dtype), jnp.asarray(_IMAGENET_STD, x.dtype)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def forward(self, x):
        x = self._transform_input(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        with_aux = self.aux_logits and not self.deterministic
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if with_aux else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(flatten(self.avgpool(x))))
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits


# --------------------------------------------------------------------------------------------
# ResNet / ResNeXt
# --------------------------------------------------------------------------------------------
def conv3x3(in_planes, out_planes, stride=1, groups=1, *, rngs, dtype) -> Conv2d:
    return Conv2d(
        in_planes,
        out_planes,
        3,
        stride=stride,
        padding=1,
        groups=groups,
        bias=False,
        dtype=dtype,
        rngs=rngs,
    )


def conv1x1(in_planes, out_planes, stride=1, *, rngs, dtype) -> Conv2d:
    return Conv2d(in_planes, out_planes, 1, stride=stride, bias=False, dtype=dtype, rngs=rngs)


class BasicBlock(nnx.Module):
    """conv3×3 (stride) → BN → ReLU → conv3×3 → BN, plus the (downsampled) input, ReLU."""

    expansion = 1

    def __init__(
        self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, *, rngs, dtype
    ):
        if groups != 1 or base_width != 64:
            raise ValueError('BasicBlock only supports groups=1 and base_width=64 (as torchvision)')
        kw = dict(rngs=rngs, dtype=dtype)
        self.conv1 = conv3x3(inplanes, planes, stride, **kw)
        self.bn1 = BatchNorm2d(planes, dtype=dtype)
        self.relu = ReLU()
        self.conv2 = conv3x3(planes, planes, **kw)
        self.bn2 = BatchNorm2d(planes, dtype=dtype)
        self.downsample = downsample

    def __call__(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class Bottleneck(nnx.Module):
    """ResNet v1.5 bottleneck: 1×1 → 3×3 (stride, groups) → 1×1 (×4), each with BN.

    width = int(planes · base_width / 64) · groups: ResNeXt-50 32×4d has 32 groups of 4
    channels per 64 planes (128 wide in layer1). The stride sits on the 3×3 conv, as torchvision.
    """

    expansion = 4

    def __init__(
        self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, *, rngs, dtype
    ):
        kw = dict(rngs=rngs, dtype=dtype)
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width, **kw)
        self.bn1 = BatchNorm2d(width, dtype=dtype)
        self.conv2 = conv3x3(width, width, stride, groups, **kw)
        self.bn2 = BatchNorm2d(width, dtype=dtype)
        self.conv3 = conv1x1(width, planes * self.expansion, **kw)
        self.bn3 = BatchNorm2d(planes * self.expansion, dtype=dtype)
        self.relu = ReLU()
        self.downsample = downsample

    def __call__(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class ResNet(Classifier):
    """torchvision's ResNet: conv1 7×7/2 → bn1 → relu → maxpool 3×3/2 → layer1..4 → avgpool → fc."""

    def __init__(
        self,
        block,
        layers,
        *,
        arch,
        num_classes,
        in_channels,
        image_size,
        rngs,
        dtype,
        groups: int = 1,
        width_per_group: int = 64,
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        self.conv1 = Conv2d(
            in_channels, 64, 7, stride=2, padding=3, bias=False, dtype=dtype, rngs=rngs
        )
        self.bn1 = BatchNorm2d(64, dtype=dtype)
        self.relu = ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            # torchvision's ``_make_layer``: only the first block changes shape, through a
            # 1×1 conv + BN ``downsample`` when the stride or the width changes.
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = Sequential(
                    conv1x1(inplanes, planes * block.expansion, stride, rngs=rngs, dtype=dtype),
                    BatchNorm2d(planes * block.expansion, dtype=dtype),
                )
            kw = dict(groups=groups, base_width=width_per_group, rngs=rngs, dtype=dtype)
            stage = [block(inplanes, planes, stride, downsample, **kw)]
            inplanes = planes * block.expansion
            stage += [block(inplanes, planes, **kw) for _ in range(1, blocks)]
            setattr(self, f'layer{i + 1}', Sequential(*stage))
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.fc = Linear(512 * block.expansion, num_classes, dtype=dtype, rngs=rngs)
        self.require_image_size(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(flatten(self.avgpool(x)))


# --------------------------------------------------------------------------------------------
# DenseNet-BC
# --------------------------------------------------------------------------------------------
class DenseLayer(nnx.Module):
    """``_DenseLayer``: norm1 → relu1 → conv1 1×1 (bn_size·k) → norm2 → relu2 → conv2 3×3 (k).

    Returns only the k (growth rate) new channels; ``DenseBlock`` concatenates them.
    """

    def __init__(self, num_input_features, growth_rate, bn_size, *, rngs, dtype):
        width = bn_size * growth_rate
        self.norm1 = BatchNorm2d(num_input_features, dtype=dtype)
        self.relu1 = ReLU()
        self.conv1 = Conv2d(num_input_features, width, 1, bias=False, dtype=dtype, rngs=rngs)
        self.norm2 = BatchNorm2d(width, dtype=dtype)
        self.relu2 = ReLU()
        self.conv2 = Conv2d(width, growth_rate, 3, padding=1, bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nnx.Module):
    """``_DenseBlock``: ``denselayer1..n``, each fed all earlier outputs concatenated."""

    def __init__(self, num_layers, num_input_features, bn_size, growth_rate, *, rngs, dtype):
        self._layer_names = tuple(f'denselayer{i + 1}' for i in range(num_layers))
        for i, name in enumerate(self._layer_names):
            setattr(
                self,
                name,
                DenseLayer(
                    num_input_features + i * growth_rate,
                    growth_rate,
                    bn_size,
                    rngs=rngs,
                    dtype=dtype,
                ),
            )

    def __call__(self, x):
        for name in self._layer_names:
            x = jnp.concatenate([x, getattr(self, name)(x)], axis=-1)
        return x


def transition(num_input_features, num_output_features, *, rngs, dtype) -> NamedSequential:
    """torchvision's ``_Transition``: norm → relu → 1×1 conv → 2×2/2 average pool."""
    return NamedSequential(
        norm=BatchNorm2d(num_input_features, dtype=dtype),
        relu=ReLU(),
        conv=Conv2d(num_input_features, num_output_features, 1, bias=False, dtype=dtype, rngs=rngs),
        pool=AvgPool2d(2, stride=2),
    )


class DenseNet(Classifier):
    """DenseNet-BC: ``features`` (conv0 … denseblockN, norm5) → ReLU → global pool → classifier.

    The final ReLU and pool are functional in torchvision, so ``classifier`` follows ``features``.
    """

    def __init__(
        self,
        *,
        arch,
        num_classes,
        in_channels,
        image_size,
        rngs,
        dtype,
        growth_rate=32,
        block_config=(6, 12, 24, 16),
        num_init_features=64,
        bn_size=4,
    ):
        super().__init__(arch, in_channels, image_size, dtype)
        kw = dict(rngs=rngs, dtype=dtype)
        children = dict(
            conv0=Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False, **kw),
            norm0=BatchNorm2d(num_init_features, dtype=dtype),
            relu0=ReLU(),
            pool0=MaxPool2d(3, stride=2, padding=1),
        )
        c = num_init_features
        for i, num_layers in enumerate(block_config):
            children[f'denseblock{i + 1}'] = DenseBlock(num_layers, c, bn_size, growth_rate, **kw)
            c += num_layers * growth_rate
            if i != len(block_config) - 1:
                children[f'transition{i + 1}'] = transition(c, c // 2, **kw)
                c //= 2
        children['norm5'] = BatchNorm2d(c, dtype=dtype)
        self.features = NamedSequential(**children)
        self.require_image_size(self.features)
        self.classifier = Linear(c, num_classes, dtype=dtype, rngs=rngs)

    def forward(self, x):
        x = jax.nn.relu(self.features(x))
        return self.classifier(flatten(adaptive_avg_pool2d(x, (1, 1))))


# --------------------------------------------------------------------------------------------
# Registration: each builder configures the class as torchvision's builder of that name does.
# --------------------------------------------------------------------------------------------
@register_model
def tv_alexnet(**kw) -> AlexNet:
    """torchvision's alexnet, Krizhevsky 2014, https://arxiv.org/abs/1404.5997."""
    return AlexNet(**kw)


@register_model
def tv_vgg11(**kw) -> VGG:
    """torchvision's vgg11, Simonyan & Zisserman 2014, https://arxiv.org/abs/1409.1556."""
    return VGG(VGG_CFGS['A'], **kw)


@register_model
def tv_vgg11_bn(**kw) -> VGG:
    """torchvision's vgg11_bn: vgg11 with BatchNorm, https://arxiv.org/abs/1409.1556."""
    return VGG(VGG_CFGS['A'], batch_norm=True, **kw)


@register_model
def tv_googlenet(**kw) -> GoogLeNet:
    """torchvision's googlenet, Szegedy et al. 2014, https://arxiv.org/abs/1409.4842."""
    return GoogLeNet(**kw)


@register_model
def tv_resnet18(**kw) -> ResNet:
    """torchvision's resnet18, He et al. 2015, https://arxiv.org/abs/1512.03385."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **kw)


@register_model
def tv_resnext50_32x4d(**kw) -> ResNet:
    """torchvision's resnext50_32x4d, Xie et al. 2016, https://arxiv.org/abs/1611.05431."""
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4, **kw)


@register_model
def tv_densenet121(**kw) -> DenseNet:
    """torchvision's densenet121, Huang et al. 2016, https://arxiv.org/abs/1608.06993."""
    return DenseNet(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, **kw)
