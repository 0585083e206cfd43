"""The torch twin's side of the speed benchmark: eager NCHW, eager channels_last, torch.compile.

Same architecture (``parity.torch_model``), same weights (copied from the jaxconv model with
``parity.to_torch``), same batch, same optimizer (``torch.optim.SGD`` with momentum, which
``jaxconv.optim.torch_sgd`` reproduces), train mode. On a GPU every variant runs with TF32 off
(parity-grade float32, as jaxconv's 'highest' precision) except ``compile_tf32``, which turns
TF32 on for its own steps only (the flags are global, and variants are timed interleaved).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from parity import to_torch, torch_model

VARIANTS = ('eager', 'channels_last', 'compile')
GPU_VARIANTS = ('compile_tf32',)


@dataclass
class TorchStep:
    run: Callable[[], object]
    compile_s: float | None = None  # first-call time minus a steady step, for torch.compile
    peak: dict = field(default_factory=dict)  # {'device_bytes': ...} on a GPU


def torch_twin(
    arch: str,
    flax_model,
    image_size: int,
    num_classes: int = 10,
    in_channels: int = 3,
    device: str = 'cpu',
):
    model = torch_model(
        arch, num_classes=num_classes, in_channels=in_channels, image_size=image_size
    )
    to_torch(flax_model, model)
    return model.to(device)


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 for CUDA matmuls and cuDNN convolutions inside the block only."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _prepare(model, x_nhwc: np.ndarray, y: np.ndarray, variant: str, device: str):
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))).to(device)
    y = torch.from_numpy(y.astype(np.int64)).to(device)
    if variant == 'channels_last':
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if variant.startswith('compile'):
        model = torch.compile(model)
    return model, x, y


def _wrap(step: Callable[[], object], variant: str, device: str, peak: dict):
    """Add the variant's TF32 setting, device sync and (GPU) peak-memory tracking to a step."""
    cuda = device.startswith('cuda')

    def run():
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with tf32(variant.endswith('_tf32')) if cuda else contextlib.nullcontext():
            out = step()
            if cuda:
                torch.cuda.synchronize()
        if cuda:
            peak['device_bytes'] = max(
                peak.get('device_bytes', 0), torch.cuda.max_memory_allocated()
            )
        return out

    return run


def _finish(run, variant: str, peak: dict) -> TorchStep:
    if not variant.startswith('compile'):
        return TorchStep(run, None, peak)
    t0 = time.perf_counter()
    run()  # compiles
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    run()
    return TorchStep(run, max(0.0, first - (time.perf_counter() - t0)), peak)


def train_step(
    model, x_nhwc, y, variant: str, *, lr: float, momentum: float, device: str = 'cpu'
) -> TorchStep:
    model.train()
    model, x, y = _prepare(model, x_nhwc, y, variant, device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    peak: dict = {}
    return _finish(_wrap(step, variant, device, peak), variant, peak)


def forward_step(model, x_nhwc, variant: str, device: str = 'cpu') -> TorchStep:
    model.eval()
    model, x, _ = _prepare(model, x_nhwc, np.zeros(1, np.int64), variant, device)

    def step():
        with torch.no_grad():
            return model(x)

    peak: dict = {}
    return _finish(_wrap(step, variant, device, peak), variant, peak)
