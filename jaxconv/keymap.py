"""The torch state_dict key map of a jaxconv model, without torch.

Every torch-named layer (``jaxconv.layers``) contributes its torch state_dict keys, each with the
Flax variable it fills and the layout change (conv ``permute(2, 3, 1, 0)``, linear ``.T``). The
map lives in the library, not in the parity harness, because reading and writing weight files
(``jaxconv.weights``) needs it where torch is not installed; ``parity.transfer`` builds its
in-memory torch transfers on the same map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from flax import nnx

from jaxconv import layers as L


class TransferError(ValueError):
    """The two models do not have the same parameters (names or shapes)."""


def _conv_to_flax(w: np.ndarray) -> np.ndarray:  # torch (O, I, kh, kw) -> Flax HWIO
    return np.transpose(w, (2, 3, 1, 0))


def _conv_to_torch(k: np.ndarray) -> np.ndarray:
    return np.transpose(k, (3, 2, 0, 1))


def _same(a: np.ndarray) -> np.ndarray:
    return a


# Per layer type: (torch suffix, Flax attribute, to_flax, to_torch).
LAYER_KEYS: dict[type, list[tuple[str, str, Callable, Callable]]] = {
    L.Conv2d: [('weight', 'kernel', _conv_to_flax, _conv_to_torch), ('bias', 'bias', _same, _same)],
    L.Linear: [('weight', 'kernel', np.transpose, np.transpose), ('bias', 'bias', _same, _same)],
    L.BatchNorm2d: [
        ('weight', 'scale', _same, _same),
        ('bias', 'bias', _same, _same),
        ('running_mean', 'mean', _same, _same),
        ('running_var', 'var', _same, _same),
        ('num_batches_tracked', 'num_batches_tracked', _same, _same),
    ],
}


@dataclass(frozen=True)
class KeyMapEntry:
    torch_key: str
    flax_path: str
    variable: nnx.Variable
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]
    layer: nnx.Module


def key_map(flax_module: nnx.Module) -> list[KeyMapEntry]:
    """One entry per torch state_dict key the Flax model holds, in module order."""
    entries = []
    for name, layer in L.named_layers(flax_module):
        for cls, keys in LAYER_KEYS.items():
            if isinstance(layer, cls):
                for suffix, attr, to_flax, to_torch in keys:
                    var = getattr(layer, attr, None)
                    if var is None:  # e.g. a conv built with bias=False
                        continue
                    entries.append(
                        KeyMapEntry(
                            f'{name}.{suffix}', f'{name}.{attr}', var, to_flax, to_torch, layer
                        )
                    )
                break
    return entries


def flax_variables(flax_module: nnx.Module) -> dict[str, nnx.Variable]:
    """Every parameter and batch statistic of the Flax model, by dotted path."""
    out = {}
    for path, node in nnx.iter_graph(flax_module):
        if isinstance(node, (nnx.Param, nnx.BatchStat)):
            out['.'.join(str(p) for p in path)] = node
    return out


def check(problems: list[str], what: str):
    """Raise ``TransferError`` listing every problem, if there is any."""
    if problems:
        raise TransferError(f'{what}: {len(problems)} problem(s):\n  ' + '\n  '.join(problems))
