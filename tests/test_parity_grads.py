"""Gradient parity: the cross-entropy loss and the gradient of every parameter, jaxconv against
torch, through the same key map, in training mode (gradients flow through the batch
statistics).

float64: loss ≤ 1e-12, every gradient ≤ 1e-10 (relative per tensor, parity.metrics).
float32: judged by torch float64, jaxconv may be at most 4× as far from it as torch float32
(floor 1e-5), on the first batch or else on both of the next two (``compare_on_batches``
says why).
Each test prints its worst figures (``pytest -s``); ``python -m parity.report_table`` tabulates
them for every arch.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxconv.training import steps
from parity.archs import course_archs, torchvision_archs
from parity.compare import batches_pass, compare_on_batches, grad_diff
from parity.metrics import float32_bound, set_relative_errors
from parity.pair import make_pair
from parity.precision import exact_numerics


@pytest.mark.parametrize('arch', course_archs())
def test_float64_gradients(arch):
    report = grad_diff(make_pair(arch, 'float64'))
    print(f'\n{arch} float64: worst gradient/loss relative error {report.worst_error:.2e}')
    assert report.ok, report.table(only_failures=True)


@pytest.mark.parametrize('arch', course_archs())
def test_float32_gradients_as_faithful_as_torch(arch):
    reports = compare_on_batches(grad_diff, make_pair(arch, 'float32'))
    for r in reports:
        print(
            f'\n{arch} float32 seed {r.title.split("seed ")[-1]}: jaxconv {r.worst_error:.2e}, '
            f'torch {r.worst_torch_error:.2e} ({"pass" if r.ok else "FAIL"})'
        )
    assert batches_pass(reports), '\n\n'.join(r.table(only_failures=True) for r in reports)


def test_label_smoothed_cross_entropy_is_torchs():
    """Per example, in float64; smoothing changes the loss (so the parity test below, where
    both sides take the same setting, cannot pass by both ignoring it)."""
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(16, 10)) * 3, rng.integers(0, 10, 16)
    with exact_numerics():
        for eps in (0.0, 0.1, 0.3):
            ours = np.asarray(steps.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), eps))
            theirs = F.cross_entropy(
                torch.as_tensor(logits),
                torch.as_tensor(labels),
                reduction='none',
                label_smoothing=eps,
            ).numpy()
            np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-13)
        plain = steps.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
        smoothed = steps.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), 0.1)
        assert float(jnp.abs(plain - smoothed).min()) > 1e-3


@pytest.mark.parametrize('arch', ['lenet', 'resnet18'])
def test_float64_gradients_with_label_smoothing(arch):
    """``--label-smoothing`` is torch's ``CrossEntropyLoss(label_smoothing=...)``, through the
    whole train step (tv_googlenet's auxiliary heads: the slow set)."""
    report = grad_diff(make_pair(arch, 'float64'), label_smoothing=0.1)
    assert report.ok, report.table(only_failures=True)


@pytest.mark.slow
def test_float64_gradients_with_label_smoothing_on_auxiliary_heads():
    report = grad_diff(make_pair('tv_googlenet', 'float64'), label_smoothing=0.1)
    assert report.ok, report.table(only_failures=True)


def test_a_wrong_weight_fails_the_gradient_check():
    """The check is not vacuous: one Flax weight nudged by 1e-3 of its scale fails it."""
    pair = make_pair('lenet', 'float64')
    kernel = pair.flax.net.layers[3].kernel
    with exact_numerics():  # float64 arithmetic outside it would be float32
        kernel[...] = kernel[...].at[0, 0, 0, 0].add(1e-3 * float(np.abs(kernel[...]).max()))
    report = grad_diff(pair)
    assert not report.ok
    assert 'grad net.3.weight' in {f.name for f in report.failures}


def test_relative_error_scales_by_the_larger_of_tensor_and_model():
    ref = {'big': np.array([100.0, -50.0]), 'tiny': np.array([1e-9, 0.0])}
    test = {'big': np.array([100.0, -49.0]), 'tiny': np.array([1e-9 + 2e-2, 0.0])}
    errors = set_relative_errors(test, ref)
    assert errors['big'] == pytest.approx(1.0 / 100.0)
    assert errors['tiny'] == pytest.approx(2e-2 / (1e-3 * 100.0))  # floored at 1e-3·max|g|


def test_float32_bound():
    assert float32_bound(1e-4) == pytest.approx(4e-4)
    assert float32_bound(1e-7) == 1e-5


@pytest.mark.slow
@pytest.mark.parametrize('arch', torchvision_archs())
def test_torchvision_archs_float64_gradients(arch):
    report = grad_diff(make_pair(arch, 'float64'))
    assert report.ok, report.table(only_failures=True)
