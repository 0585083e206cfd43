"""The per-layer and per-mode benchmarks run end to end and do what their options say (never
timed: the figures themselves belong in benchmarks/README.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import conv_layers, modes, pools
from jaxconv import conv_lowering as cl
from jaxconv import layers as L


def test_conv_layers_times_only_the_chosen_passes_and_lowerings(capsys):
    conv_layers.main(
        ['--shape', '2,5,16,4,3,1,1,1', '--pass', 'dx', '--lowering', 'xla', '--lowering', 'taps']
        + ['--repeats', '1']
    )
    out = capsys.readouterr().out
    assert ' dx:' in out and 'fwd:' not in out and ' dw:' not in out
    assert 'xla ' in out and 'taps ' in out and 'plan ' in out
    assert 'im2col' not in out and 's2d' not in out


def test_modes_constant_is_set_while_tracing_and_restored():
    name, value = modes._parse_constant('FEW_CHANNELS=0')
    spec = cl.ConvSpec((1, 1), (2, 2), (1, 1), 1)
    lenet_first = ((8, 32, 32, 3), (5, 5, 3, 6))
    assert cl.cpu_plan(*lenet_first, spec).fwd.lowering == 'banded'
    with modes._constant(name, value):
        assert cl.cpu_plan(*lenet_first, spec).fwd.lowering == 'xla'
    assert cl.FEW_CHANNELS == 16 and cl.cpu_plan(*lenet_first, spec).fwd.lowering == 'banded'


@pytest.mark.parametrize('text', ['NOT_A_CONSTANT=1', 'FEW_CHANNELS=x', 'plan=1'])
def test_modes_constant_rejects_what_is_not_a_threshold(text):
    with pytest.raises(SystemExit, match='--constant'):
        modes._parse_constant(text)


def test_modes_times_a_variant_per_constant():
    results = modes.main(
        ['--arch', 'lenet', '--modes', 'heuristic', '--batch-size', '4', '--repeats', '1']
        + ['--constant', 'FEW_CHANNELS=0']
    )
    assert set(results['lenet']) == {'heuristic', 'heuristic+FEW_CHANNELS=0'}
    assert all(v > 0 for v in results['lenet'].values())


@pytest.mark.parametrize('pool', [L.MaxPool2d(3, 2, 1), L.AvgPool2d(2)], ids=['max3s2', 'avg2'])
def test_pools_dy_fused_variant_changes_the_program_not_the_gradient(pool):
    x = jnp.asarray(np.random.default_rng(0).integers(0, 3, (2, 9, 9, 4)), jnp.float32)

    def grad_and_hlo():
        f = jax.jit(jax.grad(lambda x: (pool(x) * jnp.arange(4.0)).sum()))
        return np.asarray(f(x)), f.lower(x).as_text()

    g, hlo = grad_and_hlo()
    with pools.dy_fused_pools():
        g_fused, hlo_fused = grad_and_hlo()
    assert hlo.count('divide') == hlo_fused.count('divide') + 1
    np.testing.assert_array_equal(g, g_fused)
