"""jaxconv's optax optimizers (``jaxconv.optim.make_optimizer``) take the same steps as
``torch.optim``: SGD (plain, momentum, nesterov, weight decay), Adam with torch's L2
``weight_decay`` (the notes' ``Adam(lr=0.03, weight_decay=0.01)``) and AdamW, fed the same
gradients for 10 steps."""

from __future__ import annotations

import pytest
import torch

from parity.compare import optimizer_diff
from parity.optimizers import OPTIMIZER_CASES, OptimizerCase
from parity.pair import DTYPES


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('case', sorted(OPTIMIZER_CASES))
def test_optax_takes_torch_optims_steps(case, dtype):
    report = optimizer_diff(case, dtype=dtype, steps=10)
    assert report.ok, report.table(only_failures=True)


def test_the_cases_cover_the_course_settings():
    assert OPTIMIZER_CASES['adam_l2'] == OptimizerCase('adam', lr=0.03, weight_decay=0.01)
    assert {c.optimizer for c in OPTIMIZER_CASES.values()} == {
        'sgd',
        'momentum',
        'nesterov',
        'adam',
        'adamw',
    }
    assert all(c.weight_decay > 0 for n, c in OPTIMIZER_CASES.items() if n != 'sgd')


class L2AdamAgainstAdamW(OptimizerCase):
    """optax's L2 Adam paired with torch's AdamW: what confusing the two would look like."""

    def torch(self, params):
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


def test_l2_adam_is_not_adamw():
    """The comparison can tell torch's Adam(weight_decay) from AdamW (decoupled decay)."""
    case = L2AdamAgainstAdamW('adam', lr=0.03, weight_decay=0.01)
    assert not optimizer_diff(case, dtype='float64', steps=3).ok
