"""optax optimizers that take the same steps as ``torch.optim`` (checked in the parity tests).

torch folds ``weight_decay`` into the gradient (L2) for SGD and Adam; ``optax.adamw`` decays
the weights directly (decoupled), which is what ``torch.optim.AdamW`` does. Built from optax's
own transforms, never hand-written updates.
"""

from __future__ import annotations

import optax

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw')


def torch_sgd(
    lr,
    momentum: float = 0.0,
    *,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    dampening: float = 0.0,
) -> optax.GradientTransformation:
    """``torch.optim.SGD``: g += wd·p; buf = μ·buf + g (buf₀ = g); p -= lr·(g + μ·buf if
    nesterov)."""
    if dampening:
        raise ValueError('dampening != 0 has no optax equivalent here; use dampening=0')
    if nesterov and momentum <= 0:
        raise ValueError('nesterov momentum requires momentum > 0 (as in torch)')
    return optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.sgd(lr, momentum=momentum or None, nesterov=nesterov),
    )


def torch_adam(
    lr, betas=(0.9, 0.999), eps: float = 1e-8, *, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """``torch.optim.Adam`` with its L2 ``weight_decay`` (added to the gradient before Adam)."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.adam(lr, b1=betas[0], b2=betas[1], eps=eps),
    )


def torch_adamw(
    lr, betas=(0.9, 0.999), eps: float = 1e-8, *, weight_decay: float = 0.01
) -> optax.GradientTransformation:
    """``torch.optim.AdamW``: p -= lr·(adam_step + wd·p), torch's default wd 0.01."""
    return optax.adamw(lr, b1=betas[0], b2=betas[1], eps=eps, weight_decay=weight_decay)


def make_optimizer(
    name: str, lr, *, weight_decay: float = 0.0, momentum: float = 0.9
) -> optax.GradientTransformation:
    """The optimizer ``train.py --optimizer NAME`` uses; ``lr`` may be an optax schedule."""
    if name == 'sgd':
        return torch_sgd(lr, weight_decay=weight_decay)
    if name == 'momentum':
        return torch_sgd(lr, momentum, weight_decay=weight_decay)
    if name == 'nesterov':
        return torch_sgd(lr, momentum, nesterov=True, weight_decay=weight_decay)
    if name == 'adam':
        return torch_adam(lr, weight_decay=weight_decay)
    if name == 'adamw':
        return torch_adamw(lr, weight_decay=weight_decay)
    raise ValueError(f'unknown optimizer {name!r}; choose one of: {", ".join(OPTIMIZERS)}')
