"""The model zoo: importing a family module registers its models."""

from jaxconv.models import alexnet, densenet, googlenet, lenet, mlp, nin, resnet, vgg  # noqa: F401
from jaxconv.registry import create_model, list_models, register_model

__all__ = ['create_model', 'list_models', 'register_model']
