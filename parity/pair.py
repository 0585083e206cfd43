"""A jaxconv model and its torch twin holding the same weights, plus the inputs they are fed.

``make_pair(arch, dtype)`` is where every comparison starts: it builds both models with the
same arguments, gives the BatchNorm layers non-trivial affine parameters and running
statistics (torch's and Flax's defaults, 1/0/0/1, would hide a swapped mean/var or
weight/bias), and copies the Flax weights into the twin with ``parity.to_torch``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from torch import nn

from jaxconv import layers as L
from jaxconv.models import create_model, min_image_size
from jaxconv.training import steps
from jaxconv.training.config import DTYPES
from parity import execute
from parity.precision import with_exact_numerics
from parity.transfer import to_torch
from parity.twins import torch_model


@dataclass(frozen=True)
class Profile:
    """Input sizes an architecture is compared at.

    ``image_size`` and ``batch_size`` serve the gradient and trajectory comparisons: the
    smallest image the arch accepts where that leaves a spatial map to convolve, and a batch
    big enough that every BatchNorm normalises at least 4-8 values per channel in training
    mode (with 2 values, the normalised output is ±1 and its gradient is so ill-conditioned
    that float64 itself loses 4 to 8 digits). ``batch2_image_size`` is the image size for the
    train-mode comparison at batch 2 (at least 8 values per channel), when it differs.

    ``long_run`` is (image size, batch size) for the 100-step trajectories, when they differ.
    A BatchNorm net trained on few values per channel is chaotic: measured on resnet18 at
    16×16, batch 8 (1×1 maps in the last stage), SGD lr 0.01, the loss jumps to 10 and
    float64's last-bit differences grow ~10× every 5 steps, from 5e-15 at step 1 to 1e-8 at
    step 55 -- no bound on identical math can hold there. At 33×33, batch 16 (64 values per
    channel) the same 100 steps stay within 2e-13.
    """

    image_size: int
    batch_size: int = 4
    batch2_image_size: int | None = None
    long_run: tuple[int, int] | None = None


# 33: last stage 2×2, 8 values per channel at batch 2, 64 at batch 16.
_RESNET_PROFILE = Profile(16, 8, batch2_image_size=33, long_run=(33, 16))
PARITY_PROFILES = {
    'mlp': Profile(8),
    'mlp_dropout': Profile(8),
    'lenet': Profile(12),
    'alexnet': Profile(65),
    'nin': Profile(67),
    'googlenet': Profile(16),
    'vgg11': Profile(32),
    'vgg13': Profile(32),
    'vgg16': Profile(32),
    'vgg19': Profile(32),
    'resnet18': _RESNET_PROFILE,
    'resnet34': _RESNET_PROFILE,
    'resnext': _RESNET_PROFILE,
    'densenet': Profile(29, 4, batch2_image_size=64, long_run=(29, 16)),
    'tv_alexnet': Profile(63),
    'tv_vgg11': Profile(32),
    'tv_vgg11_bn': Profile(32),
    'tv_googlenet': Profile(32, 8, batch2_image_size=64),
    'tv_resnet18': _RESNET_PROFILE,
    'tv_resnext50_32x4d': _RESNET_PROFILE,
    'tv_densenet121': Profile(32, 8, batch2_image_size=64),
}


def parity_profile(arch: str) -> Profile:
    """The arch's profile; an arch not listed (newly registered) gets its minimum image size."""
    return PARITY_PROFILES.get(arch) or Profile(min_image_size(arch))


def make_long_run_pair(arch: str, dtype: str = 'float32', **kw) -> ModelPair:
    """``make_pair`` at the profile's ``long_run`` size where it has one (for trajectories)."""
    image_size, batch_size = parity_profile(arch).long_run or (None, None)
    return make_pair(arch, dtype, image_size=image_size, batch_size=batch_size, **kw)


def torch_dtype_of(dtype: str) -> torch.dtype:
    return {'float32': torch.float32, 'float64': torch.float64}[dtype]


@dataclass
class ModelPair:
    """A jaxconv model and its torch twin with identical weights, both in ``dtype``.

    ``torch_judge`` is, for a float32 pair, the twin in float64 (a copy of the float32 weights,
    which float64 holds exactly): the reference both float32 implementations are measured
    against. For a float64 pair it is the twin itself.
    """

    arch: str
    dtype: str
    flax: nnx.Module
    torch: nn.Module
    image_size: int
    batch_size: int = 4
    in_channels: int = 3
    num_classes: int = 10
    _judge: nn.Module | None = field(default=None, repr=False)

    @property
    def np_dtype(self):
        return np.dtype(self.dtype)

    @property
    def torch_judge(self) -> nn.Module:
        if self.dtype == 'float64':
            return self.torch
        if self._judge is None:
            self._judge = copy.deepcopy(self.torch).double()
        return self._judge

    def set_mode(self, mode: str):
        execute.set_flax_mode(self.flax, mode)
        for model in (self.torch, self._judge):
            if model is not None:
                execute.set_torch_mode(model, mode)

    def split(self) -> steps.SplitModel:
        """The Flax model taken apart in its current mode, for the training loop's step."""
        return steps.split_model(self.flax, keep_mode=True)

    def batch(self, batch_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A reproducible NHWC batch of standard-normal images and integer labels."""
        rng = np.random.default_rng([seed, 1])
        x = rng.standard_normal(
            (batch_size, self.image_size, self.image_size, self.in_channels)
        ).astype(self.np_dtype)
        labels = rng.integers(0, self.num_classes, batch_size).astype(np.int32)
        return x, labels

    @with_exact_numerics
    def dropout_masks(self, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
        """One inverted-dropout mask per Dropout layer (keep / (1 - p)), shared by both sides.

        Shapes are those of each layer's input in the Flax layout; ``execute.torch_masks``
        transposes 4-D masks (NiN drops whole NHWC maps) for torch.
        """
        layers = execute.flax_dropout_layers(self.flax)
        if not layers:
            return {}
        graphdef, state = nnx.split(self.flax)
        shapes = execute.dropout_input_shapes(
            graphdef,
            state,
            (batch_size, self.image_size, self.image_size, self.in_channels),
            jnp.dtype(self.dtype),
        )
        rng = np.random.default_rng([seed, 2])
        return {
            name: ((rng.random(shapes[name]) >= layer.p) / (1.0 - layer.p)).astype(self.np_dtype)
            for name, layer in layers
        }


def randomize_batchnorm(model: nnx.Module, seed: int = 0):
    """Give every BatchNorm non-trivial scale, bias, running mean and (positive) running var."""
    rng = np.random.default_rng([seed, 3])
    for _, layer in L.named_layers(model):
        if isinstance(layer, L.BatchNorm2d):
            n, dt = layer.num_features, layer.dtype
            layer.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, n), dt)
            layer.bias[...] = jnp.asarray(rng.normal(0.0, 0.1, n), dt)
            layer.mean[...] = jnp.asarray(rng.normal(0.0, 0.1, n), dt)
            layer.var[...] = jnp.asarray(rng.uniform(0.5, 1.5, n), dt)


@with_exact_numerics
def make_pair(
    arch: str,
    dtype: str = 'float32',
    *,
    image_size: int | None = None,
    batch_size: int | None = None,
    in_channels: int = 3,
    num_classes: int = 10,
    seed: int = 0,
    mode: str = 'eval',
) -> ModelPair:
    """Build ``arch`` in jaxconv and torch with the same weights (Flax init, copied to torch).

    ``image_size`` and ``batch_size`` default to the arch's ``parity_profile``. Built under
    ``exact_numerics()``, so float64 works without the caller enabling x64.
    """
    if dtype not in DTYPES:
        raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
    profile = parity_profile(arch)
    image_size = image_size or profile.image_size
    batch_size = batch_size or profile.batch_size
    flax_model = create_model(
        arch,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        rngs=nnx.Rngs(seed),
        dtype=jnp.dtype(dtype),
    )
    randomize_batchnorm(flax_model, seed)
    twin = torch_model(
        arch,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        dtype=torch_dtype_of(dtype),
    )
    execute.replace_torch_dropout(twin)
    to_torch(flax_model, twin)
    pair = ModelPair(
        arch, dtype, flax_model, twin, image_size, batch_size, in_channels, num_classes
    )
    pair.set_mode(mode)
    return pair
