"""The model zoo: importing a family module registers its models."""

from jaxconv.models import alexnet, densenet, googlenet, lenet, mlp, nin, resnet, vgg  # noqa: F401
from jaxconv.models import torchvision  # noqa: F401  (the tv_* models)
from jaxconv.models.base import ImageSizeError
from jaxconv.registry import create_model, list_models, min_image_size, register_model

__all__ = ['ImageSizeError', 'create_model', 'list_models', 'min_image_size', 'register_model']
