"""The per-layer and per-mode benchmarks run end to end and do what their options say (never
timed: the figures themselves belong in benchmarks/README.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import compile_options, conv_layers, modes, pools, tn_matmul
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


@pytest.mark.parametrize('text', ['copy_insertion=true', 'xla_cpu_flag', 'XLA_FLAG=1'])
def test_compile_options_rejects_what_is_not_a_debug_option(text):
    with pytest.raises(SystemExit):
        compile_options.parse_option(text)


def test_compile_options_reads_values_as_compiler_options_takes_them():
    assert compile_options.parse_option('xla_cpu_a=True') == ('xla_cpu_a', True)
    assert compile_options.parse_option('xla_cpu_b=4') == ('xla_cpu_b', 4)
    assert compile_options.parse_option('xla_cpu_c=dot,eltwise') == ('xla_cpu_c', 'dot,eltwise')


def test_compile_options_counts_copies_of_the_donated_state_and_checks_the_numbers(tmp_path):
    # The MLP's second weight is read again by the backward after its update is computed, so
    # XLA copies it; region analysis proves the order and drops the copy, same numbers.
    out = tmp_path / 'options.json'
    result = compile_options.main(
        [
            '--arch', 'mlp', '--batch-size', '4', '--repeats', '1',
            '--option', 'xla_cpu_copy_insertion_use_region_analysis=true',
            '--json', str(out),
        ]
    )  # fmt: skip
    runs = result['archs']['mlp']
    assert runs['baseline']['state_copies'] > 0
    assert runs['xla_cpu_copy_insertion_use_region_analysis=true']['state_copies'] == 0
    assert all(r['same_as_baseline'] and r['images_per_s'] > 0 for r in runs.values())
    assert compile_options.state_copies('%copy.1 = f32[2]{0} copy(%state__params__w.1)') == 1
    assert compile_options.state_copies('%copy.2 = f32[2]{0} copy(%fusion.3)') == 0


def test_tn_matmul_times_every_variant_of_a_shape():
    (row,) = tn_matmul.main(['--shape', '64,9,8', '--repeats', '1'])
    forms = ('xla', 'xla_dyT', 'xla_PT', 'xla_splitK', 'torch')
    assert row['shape'] == (64, 9, 8) and all(row[k] > 0 for k in forms)
    (odd,) = tn_matmul.main(['--shape', '63,9,8', '--repeats', '1'])  # M not divisible: skipped
    assert 'xla_splitK' not in odd and odd['xla'] > 0
    with pytest.raises(SystemExit):
        tn_matmul.parse_shape('64,9')
