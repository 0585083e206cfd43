"""The model zoo: importing a family module registers its models."""

from jaxconv.models import (  # noqa: F401
    alexnet,
    densenet,
    googlenet,
    lenet,
    mlp,
    nin,
    resnet,
    torchvision,
    vgg,
)
from jaxconv.models.base import ImageSizeError
from jaxconv.registry import create_model, list_models, min_image_size, register_model

__all__ = ['ImageSizeError', 'create_model', 'list_models', 'min_image_size', 'register_model']
