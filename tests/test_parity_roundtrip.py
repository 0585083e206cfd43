"""Weight transfer both ways: torch → Flax → torch reproduces the state_dict bit for bit
(num_batches_tracked included), Flax → torch → Flax reproduces every Flax variable, and a
mismatch is refused with every offending key named and nothing written.

The tv_* archs' round trip is tested against torchvision itself in tests/test_torchvision.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from jaxconv.models import create_model
from parity import TransferError, to_flax, to_torch, torch_model
from parity.archs import course_archs
from parity.pair import parity_profile
from parity.precision import exact_numerics


def randomized_twin(arch: str, image_size: int, seed: int = 0, **kw) -> torch.nn.Module:
    """A twin whose every tensor holds a distinct random value: weights, biases, BatchNorm
    affine and running statistics (variance positive), and num_batches_tracked."""
    model = torch_model(arch, image_size=image_size, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith('num_batches_tracked'):
                tensor.fill_(int(torch.randint(1, 10_000, (), generator=g)))
            elif name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=g, dtype=tensor.dtype) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=g, dtype=tensor.dtype))
    return model


def assert_same_state_dict(expected: torch.nn.Module, got: torch.nn.Module):
    a, b = expected.state_dict(), got.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def flax_variables(model) -> dict[str, np.ndarray]:
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    return {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state)
    }


@pytest.mark.parametrize('arch', course_archs())
def test_round_trips_are_exact(arch):
    size = parity_profile(arch).image_size
    original = randomized_twin(arch, size)
    flax_model = to_flax(original, create_model(arch, image_size=size))
    restored = to_torch(flax_model, torch_model(arch, image_size=size))
    assert_same_state_dict(original, restored)  # torch -> Flax -> torch

    again = to_flax(restored, create_model(arch, image_size=size, rngs=nnx.Rngs(1)))
    before, after = flax_variables(flax_model), flax_variables(again)
    assert list(before) == list(after)
    for key in before:  # Flax -> torch -> Flax
        assert before[key].dtype == after[key].dtype, key
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize('arch', ['resnet18', 'densenet'])
def test_float64_round_trip_is_exact(arch):
    size = parity_profile(arch).image_size
    original = randomized_twin(arch, size).double()
    with exact_numerics():
        flax_model = to_flax(original, create_model(arch, image_size=size, dtype=jnp.float64))
        assert {a.dtype for a in flax_variables(flax_model).values()} == {
            np.dtype('float64'),
            np.dtype('int32'),
        }
    assert_same_state_dict(
        original, to_torch(flax_model, torch_model(arch, image_size=size, dtype=torch.float64))
    )


def test_num_batches_tracked_travels_both_ways():
    original = randomized_twin('resnet18', 16)
    original.net[0][1].num_batches_tracked.fill_(123_456)
    flax_model = to_flax(original, create_model('resnet18', image_size=16))
    assert int(flax_model.net.layers[0].layers[1].num_batches_tracked[...]) == 123_456
    restored = to_torch(flax_model, torch_model('resnet18', image_size=16))
    assert restored.net[0][1].num_batches_tracked.dtype == torch.int64
    assert int(restored.net[0][1].num_batches_tracked) == 123_456


def test_to_torch_names_every_missing_and_unfilled_key():
    # vgg13's blocks have two convs where vgg11's first two have one: copied into a vgg13
    # twin, vgg11 leaves each second conv unfilled; vgg13 into vgg11 finds no key for them.
    with pytest.raises(TransferError) as info:
        to_torch(create_model('vgg11', image_size=32), torch_model('vgg13', image_size=32))
    message = str(info.value)
    assert '4 problem(s)' in message
    for key, shape in [
        ('net.0.2.weight', (64, 64, 3, 3)),
        ('net.0.2.bias', (64,)),
        ('net.1.2.weight', (128, 128, 3, 3)),
        ('net.1.2.bias', (128,)),
    ]:
        assert f'torch key {key} {shape} left unfilled' in message
    with pytest.raises(TransferError) as info:
        to_torch(create_model('vgg13', image_size=32), torch_model('vgg11', image_size=32))
    message = str(info.value)
    assert 'torch model has no key net.0.2.weight for Flax net.0.2.kernel' in message
    assert 'torch model has no key net.1.2.bias for Flax net.1.2.bias' in message


def test_to_torch_names_shape_mismatches():
    flax_model = create_model('lenet', image_size=12, num_classes=10)
    with pytest.raises(
        TransferError,
        match=r'net\.11\.kernel \(84, 10\) -> \(10, 84\) does not '
        r'fit torch net\.11\.weight \(5, 84\)',
    ):
        to_torch(flax_model, torch_model('lenet', image_size=12, num_classes=5))


def test_to_torch_refuses_an_unmapped_torch_key():
    twin = torch_model('lenet', image_size=12)
    twin.register_buffer('extra', torch.zeros(3))
    with pytest.raises(TransferError, match=r'torch key extra \(3,\) left unfilled'):
        to_torch(create_model('lenet', image_size=12), twin)


def test_failed_to_torch_writes_nothing():
    twin = randomized_twin('lenet', 12, num_classes=5)
    before = {k: v.clone() for k, v in twin.state_dict().items()}
    with pytest.raises(TransferError):
        to_torch(create_model('lenet', image_size=12, num_classes=10), twin)
    for key, value in twin.state_dict().items():
        assert torch.equal(value, before[key]), key
