"""The VGG family as one table of ``(num_convs, out_channels)`` blocks (d2l's ``vgg_block``)."""

from __future__ import annotations

from jaxconv.layers import BatchNorm2d, Conv2d, Flatten, MaxPool2d, ReLU, Sequential
from jaxconv.models.base import Classifier, fc_head
from jaxconv.registry import register_model

# (num_convs, out_channels) per block: the paper's configurations A, B, D and E.
VGG_CFGS = {
    'vgg11': ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),
    'vgg13': ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),
    'vgg16': ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    'vgg19': ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}


def vgg_block(
    num_convs: int, in_channels: int, out_channels: int, *, rngs, dtype, batch_norm: bool = False
) -> Sequential:
    """``num_convs`` × (3×3 conv, pad 1, [BatchNorm,] ReLU), then a 2×2 max-pool of stride 2."""
    layers = []
    for _ in range(num_convs):
        layers.append(Conv2d(in_channels, out_channels, 3, padding=1, dtype=dtype, rngs=rngs))
        if batch_norm:
            layers.append(BatchNorm2d(out_channels, dtype=dtype))
        layers.append(ReLU())
        in_channels = out_channels
    layers.append(MaxPool2d(2, stride=2))
    return Sequential(*layers)


class VGG(Classifier):
    fixed_size = True

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
        blocks, c = [], in_channels
        for num_convs, out_channels in cfg:
            blocks.append(
                vgg_block(num_convs, c, out_channels, rngs=rngs, dtype=dtype, batch_norm=batch_norm)
            )
            c = out_channels
        features = [*blocks, Flatten()]
        (_, d) = self.require_image_size(Sequential(*features))
        self.net = Sequential(
            *features, *fc_head(d, num_classes, dropout=dropout, rngs=rngs, dtype=dtype)
        )


@register_model
def vgg11(**kw) -> VGG:
    """VGG-11 (configuration A), Simonyan & Zisserman 2014, https://arxiv.org/abs/1409.1556."""
    return VGG(VGG_CFGS['vgg11'], **kw)


@register_model
def vgg11_bn(**kw) -> VGG:
    """VGG-11 with BatchNorm after every conv (torchvision's vgg11_bn), arXiv:1502.03167."""
    return VGG(VGG_CFGS['vgg11'], batch_norm=True, **kw)


@register_model
def vgg13(**kw) -> VGG:
    """VGG-13 (configuration B), Simonyan & Zisserman 2014, https://arxiv.org/abs/1409.1556."""
    return VGG(VGG_CFGS['vgg13'], **kw)


@register_model
def vgg16(**kw) -> VGG:
    """VGG-16 (configuration D), Simonyan & Zisserman 2014, https://arxiv.org/abs/1409.1556."""
    return VGG(VGG_CFGS['vgg16'], **kw)


@register_model
def vgg19(**kw) -> VGG:
    """VGG-19 (configuration E), Simonyan & Zisserman 2014, https://arxiv.org/abs/1409.1556."""
    return VGG(VGG_CFGS['vgg19'], **kw)
