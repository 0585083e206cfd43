"""Eval-mode forward parity, float32, for every registered model at two input sizes."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import parity
from jaxconv.models import create_model, list_models, min_image_size

TOLERANCE = 1e-5  # max|Δ logits| / max|logits|; measured worst is ~6e-7


@partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)


def sizes(name):
    """Two sizes per arch: a small one and an odd, non-power-of-two one."""
    small = max(min_image_size(name), 32)
    return [small, small + 13]


@pytest.mark.parametrize('name', list_models())
def test_forward_matches_torch(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for size in sizes(name):
        kw = dict(num_classes=7, in_channels=3, image_size=size)
        flax_model = create_model(name, **kw)
        torch_model = parity.torch_model(name, **kw)
        parity.to_flax(torch_model, flax_model)
        flax_model.eval()
        torch_model.eval()
        x = rng.standard_normal((2, size, size, 3)).astype(np.float32)
        with torch.no_grad():
            expected = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        got = np.asarray(_apply(*nnx.split(flax_model), jnp.asarray(x)))
        assert got.shape == expected.shape == (2, 7)
        rel = np.abs(got - expected).max() / np.abs(expected).max()
        assert rel <= TOLERANCE, f'{name} at {size}x{size}: relative error {rel:.2e}'


def test_transfer_refuses_a_different_architecture():
    with pytest.raises(parity.TransferError) as info:
        parity.to_flax(parity.torch_model('resnet18'), create_model('resnext'))
    message = str(info.value)
    assert 'does not fit' in message and 'has no torch key net.4.1.bn3.running_var' in message
    with pytest.raises(
        parity.TransferError, match=r'torch key net\.1\.0\.bn3\.weight \(64,\) left unused'
    ):
        parity.to_flax(parity.torch_model('resnext'), create_model('resnet18'))


def test_transfer_names_every_unfilled_and_unused_key():
    flax_model = create_model('lenet', image_size=28, in_channels=1)
    torch_model = parity.torch_model('lenet', image_size=28, in_channels=1)
    del torch_model.net[-1]  # drop the last Linear: its 2 keys are missing on the torch side
    with pytest.raises(parity.TransferError, match=r'net\.11\.weight[\s\S]*net\.11\.bias'):
        parity.to_flax(torch_model, flax_model)
    wrong = parity.torch_model('lenet', image_size=28, in_channels=1, num_classes=5)
    with pytest.raises(parity.TransferError, match=r'net\.11\.weight: torch \(5, 84\)'):
        parity.to_flax(wrong, flax_model)


def test_failed_transfer_writes_nothing():
    flax_model = create_model('lenet', image_size=28, in_channels=1)
    before = np.asarray(flax_model.net.layers[0].kernel[...]).copy()
    wrong = parity.torch_model('lenet', image_size=28, in_channels=1, num_classes=5)
    with pytest.raises(parity.TransferError):
        parity.to_flax(wrong, flax_model)
    np.testing.assert_array_equal(flax_model.net.layers[0].kernel[...], before)
