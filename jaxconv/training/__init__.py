"""Training: ``fit(TrainConfig(...))`` and the pieces it is made of.

config (the dataclass and its checks) · recipes (default hyper-parameters per arch) · steps
(jitted train/eval steps over split model state) · sharding (mesh, batch sharding, multi-process)
· checkpoints (orbax) · metrics (metrics.jsonl, summary.json, curves.png) · workdir (reuse rules)
· signals (graceful stop) · loop (``fit``) · cli (``train.py``).
"""

from jaxconv.training.config import TrainConfig, resolve
from jaxconv.training.errors import ConfigError, NonFiniteLossError, TrainingError
from jaxconv.training.loop import FitResult, fit
from jaxconv.training.recipes import RECIPES, Recipe, recipe_for

__all__ = [
    'TrainConfig',
    'resolve',
    'ConfigError',
    'NonFiniteLossError',
    'TrainingError',
    'FitResult',
    'fit',
    'RECIPES',
    'Recipe',
    'recipe_for',
]
