"""Parity harness: torch twins, weight transfer both ways, and comparisons against PyTorch."""

from parity.transfer import TransferError, key_map, to_flax, to_torch
from parity.twins import list_twins, torch_model

__all__ = ['TransferError', 'key_map', 'list_twins', 'to_flax', 'to_torch', 'torch_model']

import parity.tv  # noqa: F401  (registers the tv_* twins)
