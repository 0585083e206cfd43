"""The torch twin's side of the speed benchmark: eager NCHW, eager channels_last, torch.compile.

Same architecture (``parity.torch_model``), same weights (copied from the jaxconv model with
``parity.to_torch``), same batch, same optimizer (``torch.optim.SGD`` with momentum, which
``jaxconv.optim.torch_sgd`` reproduces), train mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from parity import to_torch, torch_model

VARIANTS = ('eager', 'channels_last', 'compile')


@dataclass
class TorchStep:
    run: Callable[[], object]
    compile_s: float | None = None  # first-call time minus a steady step, for torch.compile


def torch_twin(arch: str, flax_model, image_size: int, num_classes: int = 10,
               in_channels: int = 3, device: str = 'cpu'):
    model = torch_model(arch, num_classes=num_classes, in_channels=in_channels,
                        image_size=image_size)
    to_torch(flax_model, model)
    return model.to(device)


def _prepare(model, x_nhwc: np.ndarray, y: np.ndarray, variant: str, device: str):
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))).to(device)
    y = torch.from_numpy(y.astype(np.int64)).to(device)
    if variant == 'channels_last':
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if variant == 'compile':
        model = torch.compile(model)
    return model, x, y


def _sync(device: str):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _first_call(run) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def train_step(model, x_nhwc, y, variant: str, *, lr: float, momentum: float,
               device: str = 'cpu') -> TorchStep:
    model.train()
    model, x, y = _prepare(model, x_nhwc, y, variant, device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

    def run():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        _sync(device)
        return loss

    if variant != 'compile':
        return TorchStep(run)
    first = _first_call(run)
    return TorchStep(run, max(0.0, first - _first_call(run)))


def forward_step(model, x_nhwc, variant: str, device: str = 'cpu') -> TorchStep:
    model.eval()
    model, x, _ = _prepare(model, x_nhwc, np.zeros(1, np.int64), variant, device)

    def run():
        with torch.no_grad():
            out = model(x)
        _sync(device)
        return out

    if variant != 'compile':
        return TorchStep(run)
    first = _first_call(run)
    return TorchStep(run, max(0.0, first - _first_call(run)))
