"""Training-mode parity and float64.

* BatchNorm in training mode at batch 2: the outputs, and after the step the running mean,
  torch's unbiased running variance and num_batches_tracked, for every arch with BatchNorm,
  in float32 (against torch float64, as faithful as torch float32) and float64 (≤ 1e-12).
* Dropout: the same masks injected on both sides give the same outputs (and really drop).
* float64 eval-mode forward for every arch ≤ 1e-12, every layer's output and the logits.
* With float64 enabled, a float32 model stays float32 (parameters, outputs, statistics).

The tv_* archs run the float64 checks in the slow set (see parity.archs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from jaxconv import layers as L
from parity import execute, torch_model
from parity.archs import course_archs, torchvision_archs
from parity.compare import layer_diff, train_step_diff
from parity.pair import DTYPES, make_pair, parity_profile
from parity.precision import exact_numerics

# Static, so the parametrisation needs no model built: checked against the models below.
BATCHNORM_ARCHS = ['densenet', 'resnet18', 'resnet34', 'resnext', 'vgg11_bn']
DROPOUT_ARCHS = ['alexnet', 'mlp_dropout', 'nin', 'vgg11', 'vgg11_bn', 'vgg13', 'vgg16', 'vgg19']


def batch2_pair(arch, dtype):
    profile = parity_profile(arch)
    return make_pair(arch, dtype, image_size=profile.batch2_image_size or profile.image_size)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('arch', BATCHNORM_ARCHS)
def test_batchnorm_train_step_at_batch_2(arch, dtype):
    pair = batch2_pair(arch, dtype)
    report = train_step_diff(pair, batch_size=2)
    names = [f.name for f in report.figures]
    assert any(n.endswith('running_var') for n in names)
    assert any(n.endswith('num_batches_tracked') for n in names)
    assert report.ok, report.table(only_failures=True)


# vgg13/16/19 are vgg11's layers in other numbers: float64 proves each, float32 samples vgg11.
@pytest.mark.parametrize(
    'arch,dtype',
    [(a, 'float64') for a in DROPOUT_ARCHS]
    + [(a, 'float32') for a in ['alexnet', 'mlp_dropout', 'nin', 'vgg11']],
)
def test_shared_dropout_masks_give_the_same_outputs(arch, dtype):
    pair = make_pair(arch, dtype)
    report = train_step_diff(pair, batch_size=2, dropout='shared')
    assert report.ok, report.table(only_failures=True)


@pytest.mark.parametrize('arch', ['mlp_dropout', 'nin'])  # 2-D masks; NiN's are 4-D (NHWC)
def test_shared_masks_really_drop_on_both_sides(arch):
    pair = make_pair(arch, 'float64')
    pair.set_mode('train')
    x, _ = pair.batch(2)
    masks = pair.dropout_masks(2)
    assert masks and all(0.2 < (m == 0).mean() < 0.8 for m in masks.values())
    with exact_numerics():
        graphdef, state = nnx.split(pair.flax)
        dropped = execute.flax_forward(graphdef, state, x, masks)[0]['logits']
        kept = execute.flax_forward(graphdef, state, x, {})[0]['logits']
    torch_dropped = execute.torch_forward(pair.torch, x, masks)[0]['logits']
    torch_kept = execute.torch_forward(pair.torch, x, {})[0]['logits']
    assert np.abs(np.asarray(dropped) - np.asarray(kept)).max() > 1e-3
    np.testing.assert_allclose(np.asarray(dropped), torch_dropped, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(kept), torch_kept, rtol=0, atol=1e-12)


def test_injected_masks_are_what_dropout_forward_applies():
    """The harness's injection (a tap on deterministic Dropout layers) equals calling each
    ``Dropout.forward(x, mask=...)`` by hand."""
    pair = make_pair('mlp_dropout', 'float64')
    pair.set_mode('train')
    x, _ = pair.batch(2)
    masks = pair.dropout_masks(2)
    with exact_numerics():
        graphdef, state = nnx.split(pair.flax)
        injected = np.asarray(execute.flax_forward(graphdef, state, x, masks)[0]['logits'])
        by_hand = jnp.asarray(x)
        for name, layer in zip(map(str, range(len(pair.flax.net.layers))), pair.flax.net.layers):
            if isinstance(layer, L.Dropout):
                by_hand = L.Dropout(layer.p).forward(by_hand, mask=masks[f'net.{name}'])
            else:
                by_hand = layer(by_hand)
    np.testing.assert_array_equal(injected, np.asarray(by_hand))


@pytest.mark.parametrize('arch', course_archs())
def test_float64_eval_forward_layer_by_layer(arch):
    report = layer_diff(make_pair(arch, 'float64'))
    assert not report.notes, report.notes  # every Flax layer has its torch module
    assert report.figures[-1].name == 'logits'
    assert report.ok, report.table(only_failures=True)


def test_arch_lists_are_the_models():
    for arch in course_archs():
        twin = torch_model(arch, image_size=parity_profile(arch).image_size)
        kinds = {type(m) for m in twin.modules()}
        assert (nn.BatchNorm2d in kinds) == (arch in BATCHNORM_ARCHS), arch
        assert (nn.Dropout in kinds) == (arch in DROPOUT_ARCHS), arch


def test_exact_numerics_is_scoped():
    """float64, 'highest' precision and TF32 off hold inside a comparison and nowhere else."""
    outside = (
        jax.config.jax_enable_x64,
        jax.config.jax_default_matmul_precision,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    with exact_numerics():
        assert jax.config.jax_enable_x64
        assert jax.config.jax_default_matmul_precision == 'highest'
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32
    assert (
        jax.config.jax_enable_x64,
        jax.config.jax_default_matmul_precision,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    ) == outside


# Between them these use every layer type of jaxconv.layers.
@pytest.mark.parametrize('arch', ['densenet', 'googlenet', 'lenet', 'mlp', 'nin', 'resnext'])
def test_float32_stays_float32_with_x64_enabled(arch):
    pair = batch2_pair(arch, 'float32')
    pair.set_mode('train')
    x, _ = pair.batch(2)
    with exact_numerics():
        assert jax.config.jax_enable_x64
        graphdef, state = nnx.split(pair.flax)
        heads, new_state, _ = execute.flax_forward(graphdef, state, x, {})
    floats = {str(a.dtype) for a in jax.tree.leaves(nnx.state(pair.flax, nnx.Param))}
    stats = {str(a.dtype) for a in jax.tree.leaves(new_state.filter(nnx.BatchStat))}
    assert floats == {'float32'}
    assert stats <= {'float32', 'int32'}
    assert {str(v.dtype) for v in heads.values()} == {'float32'}


@pytest.mark.slow
@pytest.mark.parametrize('arch', torchvision_archs())
def test_torchvision_archs_float64(arch):
    """The tv_* archs (ImageNet-sized: slow set): every layer and the logits in eval mode,
    the train-mode step with its BatchNorm buffers, and with shared dropout masks."""
    pair = batch2_pair(arch, 'float64')
    layers = layer_diff(pair, batch_size=2)
    assert not layers.notes, layers.notes
    for report in (
        layers,
        train_step_diff(pair, batch_size=2),
        train_step_diff(pair, batch_size=2, dropout='shared'),
    ):
        assert report.ok, report.table(only_failures=True)
