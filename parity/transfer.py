"""Weight transfer between torch and jaxconv models through an explicit, auditable key map.

The key map (``jaxconv.keymap``) is built from the Flax module tree: every torch-named layer
(``jaxconv.layers``) contributes its torch state_dict keys, each with the Flax variable it fills
and the layout change (conv ``permute(2, 3, 1, 0)``, linear ``.T``). Both directions check
every shape and fail naming every torch key left unused, every torch key missing and every
Flax variable left unfilled, as Flax's ViT conversion guide does. Nothing is skipped silently.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

# The map itself is torch-free and lives in the library (weight files need it without torch).
from jaxconv.keymap import KeyMapEntry, TransferError, key_map
from jaxconv.keymap import check as _check
from jaxconv.keymap import flax_variables as _flax_variables

__all__ = ['KeyMapEntry', 'TransferError', 'key_map', 'to_flax', 'to_torch']


def _torch_state(torch_module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return torch_module.state_dict(keep_vars=False)


def to_flax(torch_module: torch.nn.Module, flax_module: nnx.Module) -> nnx.Module:
    """Copy every torch parameter and buffer into ``flax_module`` (in place; returned too).

    Raises ``TransferError`` listing every unused torch key, every missing one, every shape
    mismatch and every Flax variable the map does not fill; nothing is written in that case.
    """
    state = _torch_state(torch_module)
    entries = key_map(flax_module)
    problems, writes = [], []
    mapped = {id(e.variable) for e in entries}
    for e in entries:
        if e.torch_key not in state:
            problems.append(f'Flax {e.flax_path} has no torch key {e.torch_key}')
            continue
        value = e.to_flax(state[e.torch_key].detach().cpu().numpy())
        target = e.variable[...]
        if value.shape != target.shape:
            problems.append(
                f'{e.torch_key}: torch {tuple(state[e.torch_key].shape)} -> '
                f'{value.shape} does not fit Flax {e.flax_path} {target.shape}'
            )
            continue
        # A copy: on CPU jnp.asarray would share torch's memory, and a later in-place torch update
        # (optimizer.step, BatchNorm statistics) would silently change the Flax model too.
        writes.append((e.variable, jnp.array(value, dtype=target.dtype, copy=True)))
    used = {e.torch_key for e in entries}
    problems += [
        f'torch key {k} {tuple(v.shape)} left unused' for k, v in state.items() if k not in used
    ]
    problems += [
        f'Flax variable {p} {tuple(v[...].shape)} left unfilled'
        for p, v in _flax_variables(flax_module).items()
        if id(v) not in mapped
    ]
    _check(problems, f'cannot copy {type(torch_module).__name__} into {type(flax_module).__name__}')
    for var, value in writes:
        var[...] = value
    return flax_module


def to_torch(flax_module: nnx.Module, torch_module: torch.nn.Module) -> torch.nn.Module:
    """Copy every Flax parameter and batch statistic into ``torch_module`` (the inverse map)."""
    state = _torch_state(torch_module)
    entries = key_map(flax_module)
    problems, writes = [], []
    for e in entries:
        if e.torch_key not in state:
            problems.append(f'torch model has no key {e.torch_key} for Flax {e.flax_path}')
            continue
        value = e.to_torch(np.array(e.variable[...]))  # writable copy, owned by torch afterwards
        target = state[e.torch_key]
        if tuple(value.shape) != tuple(target.shape):
            problems.append(
                f'Flax {e.flax_path} {np.shape(e.variable[...])} -> {value.shape} does '
                f'not fit torch {e.torch_key} {tuple(target.shape)}'
            )
            continue
        writes.append((e.torch_key, value))
    used = {e.torch_key for e in entries}
    problems += [
        f'torch key {k} {tuple(v.shape)} left unfilled' for k, v in state.items() if k not in used
    ]
    mapped = {id(e.variable) for e in entries}
    problems += [
        f'Flax variable {p} left unused'
        for p, v in _flax_variables(flax_module).items()
        if id(v) not in mapped
    ]
    _check(problems, f'cannot copy {type(flax_module).__name__} into {type(torch_module).__name__}')
    new_state = {k: torch.as_tensor(np.ascontiguousarray(v)).to(state[k].dtype) for k, v in writes}
    torch_module.load_state_dict(new_state, strict=True)
    return torch_module
