"""jaxconv.keymap and jaxconv.weights: torch state_dicts in and out without torch, timm's
fine-tuning adaptations, and the errors of weights that do not fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import parity
from jaxconv.keymap import TransferError
from jaxconv.registry import create_model
from jaxconv.weights import (
    WeightFileError,
    adapt_input_conv,
    head_layers,
    load_state_dict,
    read_state_dict,
    state_dict,
    write_state_dict,
)
from parity.tv import import_torchvision


def torch_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def timm_adapt_input_conv(in_chans: int, conv_weight: torch.Tensor) -> torch.Tensor:
    """timm.models._manipulate.adapt_input_conv (timm 1.0), the reference being matched."""
    conv_type = conv_weight.dtype
    conv_weight = conv_weight.float()
    O, I, J, K = conv_weight.shape  # noqa: E741 (timm's names)
    if in_chans == 1:
        if I > 3:
            conv_weight = conv_weight.reshape(O, I // 3, 3, J, K).sum(dim=2, keepdim=False)
        else:
            conv_weight = conv_weight.sum(dim=1, keepdim=True)
    elif in_chans != 3:
        repeat = int(math.ceil(in_chans / 3))
        conv_weight = conv_weight.repeat(1, repeat, 1, 1)[:, :in_chans, :, :]
        conv_weight *= 3 / float(in_chans)
    return conv_weight.to(conv_type)


@pytest.mark.parametrize('in_channels', [1, 2, 5, 7])
def test_adapt_input_conv_is_timms(in_channels):
    w = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(in_channels))
    ours = adapt_input_conv(w.numpy(), in_channels)
    theirs = timm_adapt_input_conv(in_channels, w).numpy()
    assert ours.shape == (8, in_channels, 3, 3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_state_dict_loads_strict_into_the_torch_twin_and_back():
    model = create_model('resnet18', num_classes=10, in_channels=1, image_size=16)
    exported = state_dict(model)
    twin = parity.torch_model('resnet18', num_classes=10, in_channels=1, image_size=16)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
    assert exported['net.0.1.num_batches_tracked'].dtype == np.int64
    fresh = create_model('resnet18', num_classes=10, in_channels=1, image_size=16, rngs=None)
    assert load_state_dict(fresh, torch_state(twin)) == []
    again = state_dict(fresh)
    assert all(np.array_equal(again[k], v) for k, v in exported.items())


def test_torchvision_checkpoint_loads_into_tv_arch_with_both_adaptations():
    tv = import_torchvision()
    torch.manual_seed(0)
    source = torch_state(tv.models.resnet18())  # ImageNet-shaped: 3 channels, 1000 classes
    model = create_model('tv_resnet18', num_classes=10, in_channels=1, image_size=32)
    head_before = np.asarray(model.fc.kernel[...]).copy()
    lines = load_state_dict(model, source)
    assert lines == [
        'conv1.weight: first conv adapted to 1 input channel(s) (summed over 3)',
        'fc.weight: head re-initialised for 10 classes (the weights have 1000)',
        'fc.bias: head re-initialised for 10 classes (the weights have 1000)',
    ]
    got = state_dict(model)
    np.testing.assert_allclose(
        got['conv1.weight'], source['conv1.weight'].sum(1, keepdims=True), rtol=1e-6
    )
    assert np.array_equal(got['layer4.1.bn2.running_var'], source['layer4.1.bn2.running_var'])
    assert np.array_equal(np.asarray(model.fc.kernel[...]), head_before)


def test_weights_of_another_arch_list_every_key_and_change_nothing():
    model = create_model('lenet', num_classes=10, in_channels=1, image_size=28)
    before = state_dict(model)
    other = torch_state(parity.torch_model('mlp', num_classes=10, in_channels=1, image_size=28))
    with pytest.raises(TransferError) as e:
        load_state_dict(model, other, what='the weights of x.pth')
    message = str(e.value)
    for key in [*before, *other]:
        assert key in message
    assert all(np.array_equal(state_dict(model)[k], v) for k, v in before.items())


def test_a_misshapen_middle_layer_is_not_adapted():
    model = create_model('lenet', num_classes=10, in_channels=1, image_size=28)
    source = state_dict(model)
    source['net.3.weight'] = np.zeros((16, 5, 5, 5), np.float32)  # 6 input channels expected
    with pytest.raises(TransferError, match=r'net\.3\.weight: \(16, 5, 5, 5\)'):
        load_state_dict(model, source)


def test_head_layers_include_googlenets_aux_classifiers():
    model = create_model('tv_googlenet', num_classes=7, in_channels=3, image_size=64)
    names = {id(layer) for layer in head_layers(model)}
    assert {id(model.fc), id(model.aux1.fc2), id(model.aux2.fc2)} == names


def test_files_round_trip_and_bad_files_are_refused(tmp_path):
    state = state_dict(create_model('lenet', num_classes=10, in_channels=1, image_size=28))
    for name in ('w.pt', 'w.safetensors'):
        back = read_state_dict(write_state_dict(state, tmp_path / name))
        assert back.keys() == state.keys()
        assert all(
            np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in state.items()
        )

    class Code:
        def __reduce__(self):
            return (print, ('pickled code ran',))

    torch.save({'w': Code()}, tmp_path / 'code.pth')
    torch.save(
        parity.torch_model('lenet', num_classes=10, in_channels=1, image_size=28),
        tmp_path / 'module.pth',
    )
    torch.save([torch.zeros(2)], tmp_path / 'list.pth')
    torch.save({'state_dict': {'w': torch.zeros(2)}}, tmp_path / 'nested.pth')
    (tmp_path / 'garbage.safetensors').write_bytes(b'\x00' * 64)
    (tmp_path / 'truncated.pt').write_bytes((tmp_path / 'w.pt').read_bytes()[:300])
    expected = {
        'code.pth': 'weights_only',
        'module.pth': 'weights_only',
        'list.pth': 'not a state_dict',
        'nested.pth': 'not tensors: state_dict',
        'garbage.safetensors': 'safetensors',
        'truncated.pt': 'weights_only',
        'missing.pth': 'no such file',
        'w.npz': 'unknown weight format',
    }
    (tmp_path / 'w.npz').write_bytes(b'')
    for name, needle in expected.items():
        with pytest.raises(WeightFileError) as e:
            read_state_dict(tmp_path / name)
        assert needle in str(e.value) and name in str(e.value), str(e.value)
