"""torchvision itself as the torch twin of the ``tv_*`` models, and a way to import it here.

``jaxconv.models.torchvision`` mirrors torchvision's module trees name for name, so the twin
of ``tv_resnet18`` is simply ``torchvision.models.resnet18(num_classes=...)``: the weight map
is the identity on names, as for the course twins in ``parity.twins``.

Importing this module registers the twins but does not import torchvision; each twin imports
it when first built (``import_torchvision``), so ``import parity`` stays fast.
"""

from __future__ import annotations

import sys
from functools import partial
from types import ModuleType

import torch
from torch import nn

from parity.twins import register_twin

# The two operator schemas torchvision's ``_meta_registrations`` needs to exist when its C++
# extension (``_C.so``) did not load; see ``import_torchvision``.
_FALLBACK_SCHEMAS = (
    'nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
    'qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor',
)
# Kept alive for the life of the process: a ``torch.library.Library`` removes its
# definitions when it is garbage-collected.
_fallback_library: torch.library.Library | None = None


def import_torchvision() -> ModuleType:
    """Import and return ``torchvision``, working around a C++ extension that cannot load.

    The installed wheel is a CUDA build, whose ``_C.so`` does not load against CPU torch;
    torchvision then fails to import with ``RuntimeError: operator torchvision::nms does not
    exist`` (it registers a fake kernel for an op the extension would have defined). Only in
    that case, the half-imported modules are dropped, the two schemas are defined, and the
    import is retried: the classification models need no custom op, and ``nms`` has no
    kernel, so calling it still fails loudly. Where the extension loads, nothing is defined.
    """
    global _fallback_library
    try:
        import torchvision

        return torchvision
    except RuntimeError as error:
        if 'torchvision::' not in str(error) or _fallback_library is not None:
            raise
    for name in [n for n in sys.modules if n == 'torchvision' or n.startswith('torchvision.')]:
        del sys.modules[name]
    _fallback_library = torch.library.Library('torchvision', 'DEF')
    for schema in _FALLBACK_SCHEMAS:
        _fallback_library.define(schema)
    import torchvision

    return torchvision


def replace_first_conv(model: nn.Module, in_channels: int) -> nn.Module:
    """Swap the model's first ``nn.Conv2d`` for one taking ``in_channels`` (in place).

    What a user does to feed torchvision grey-scale or multispectral images: the same kernel
    size, stride, padding, groups and bias, a freshly initialised weight of the new width.
    """
    name, old = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if old.groups != 1:
        raise ValueError(f'cannot change the input width of a grouped first conv ({name})')
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    parent_name, _, attr = name.rpartition('.')
    setattr(model.get_submodule(parent_name), attr, new)
    return model


# jaxconv name → torchvision builder name; extra keywords (``aux_logits``, ``dropout`` ...)
# go to the torchvision builder unchanged, as they go to ``create_model``.
TV_TWINS = {
    'tv_alexnet': 'alexnet',
    'tv_vgg11': 'vgg11',
    'tv_vgg11_bn': 'vgg11_bn',
    'tv_googlenet': 'googlenet',
    'tv_resnet18': 'resnet18',
    'tv_resnext50_32x4d': 'resnext50_32x4d',
    'tv_densenet121': 'densenet121',
}

# torchvision's GoogLeNet warns unless ``init_weights`` is given; True is its current default.
_BUILDER_DEFAULTS = {'googlenet': {'init_weights': True}}


def torchvision_model(
    tv_name: str, *, num_classes: int, in_channels: int, image_size: int, **kw
) -> nn.Module:
    """``torchvision.models.<tv_name>(num_classes=...)`` (random weights), ``in_channels`` wide.

    ``image_size`` is accepted for the twin interface and not needed: every one of these
    torchvision models ends in an adaptive pool. ``in_channels != 3`` replaces the first conv
    (``replace_first_conv``); GoogLeNet with ``transform_input=True`` needs 3 channels.
    """
    del image_size
    kw = {**_BUILDER_DEFAULTS.get(tv_name, {}), **kw}
    if in_channels != 3 and kw.get('transform_input'):
        raise ValueError(
            f'{tv_name}: transform_input re-normalises 3 ImageNet channels; got '
            f'in_channels={in_channels}'
        )
    model = getattr(import_torchvision().models, tv_name)(num_classes=num_classes, **kw)
    return replace_first_conv(model, in_channels) if in_channels != 3 else model


def _register_twins():
    for name, tv_name in TV_TWINS.items():
        register_twin(name)(partial(torchvision_model, tv_name))


_register_twins()
