"""The optimizer settings compared: jaxconv's optax optimizers against ``torch.optim``.

One ``OptimizerCase`` names a ``jaxconv.optim.make_optimizer`` configuration (the one
``train.py`` uses) and builds the torch optimizer the course would write for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import optax
import torch

from jaxconv.optim import make_optimizer


@dataclass(frozen=True)
class OptimizerCase:
    optimizer: str  # a jaxconv.optim.OPTIMIZERS name
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.9

    def optax(self) -> optax.GradientTransformation:
        return make_optimizer(
            self.optimizer, self.lr, weight_decay=self.weight_decay, momentum=self.momentum
        )

    def torch(self, params) -> torch.optim.Optimizer:
        o, lr, wd = self.optimizer, self.lr, self.weight_decay
        if o == 'sgd':
            return torch.optim.SGD(params, lr=lr, weight_decay=wd)
        if o in ('momentum', 'nesterov'):
            return torch.optim.SGD(
                params, lr=lr, momentum=self.momentum, weight_decay=wd, nesterov=o == 'nesterov'
            )
        if o == 'adam':
            return torch.optim.Adam(params, lr=lr, weight_decay=wd)
        if o == 'adamw':
            return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
        raise ValueError(f'no torch optimizer for {o!r}')


OPTIMIZER_CASES = {
    'sgd': OptimizerCase('sgd', lr=0.05),
    'sgd_wd': OptimizerCase('sgd', lr=0.05, weight_decay=5e-4),
    'momentum': OptimizerCase('momentum', lr=0.01, weight_decay=5e-4),
    'nesterov': OptimizerCase('nesterov', lr=0.01, weight_decay=5e-4),
    # The notes' Adam(lr=0.03, weight_decay=0.01): L2 added to the gradient, not AdamW.
    'adam_l2': OptimizerCase('adam', lr=0.03, weight_decay=0.01),
    'adamw': OptimizerCase('adamw', lr=1e-3, weight_decay=0.01),
}


def optimizer_case(name: str) -> OptimizerCase:
    if name not in OPTIMIZER_CASES:
        raise ValueError(
            f'unknown optimizer case {name!r}; choose one of: {", ".join(OPTIMIZER_CASES)}'
        )
    return OPTIMIZER_CASES[name]
