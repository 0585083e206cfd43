"""Which registered architectures the parity tests and reports run on.

Every registered arch with a torch twin is comparable. The torchvision variants (``tv_*``) are
ImageNet-sized (up to 129M parameters, DenseNet-121's 121 layers): their XLA compilations alone
would exceed the default test budget on two CPU cores, so the default-suite gradient,
train-mode and trajectory tests run on the course archs and the ``tv_*`` archs run in the
slow set (their state_dict round trip is in ``tests/test_torchvision.py``).
"""

from __future__ import annotations

from jaxconv import layers as L
from jaxconv.models import list_models
from parity.twins import list_twins

TORCHVISION_PREFIX = 'tv_'


def parity_archs() -> list[str]:
    """Registered archs that have a torch twin (all of them, today)."""
    twins = set(list_twins())
    return [a for a in list_models() if a in twins]


def course_archs() -> list[str]:
    """The course's architectures: ``parity_archs()`` without the torchvision variants."""
    return [a for a in parity_archs() if not a.startswith(TORCHVISION_PREFIX)]


def torchvision_archs() -> list[str]:
    return [a for a in parity_archs() if a.startswith(TORCHVISION_PREFIX)]


def has_layer(model, layer_type: type) -> bool:
    return any(isinstance(layer, layer_type) for _, layer in L.named_layers(model))


def has_batchnorm(model) -> bool:
    return has_layer(model, L.BatchNorm2d)


def has_dropout(model) -> bool:
    return has_layer(model, L.Dropout)
