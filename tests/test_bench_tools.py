"""The per-layer and per-mode benchmarks run end to end and do what their options say (never
timed: the figures themselves belong in benchmarks/README.md)."""

from __future__ import annotations

import pytest

from benchmarks import conv_layers, modes
from jaxconv import conv_lowering as cl


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
    name, value = modes._parse_constant('S2D_MAX_CHANNELS=0')
    spec = cl.ConvSpec((1, 1), (2, 2), (1, 1), 1)
    lenet_first = ((8, 32, 32, 3), (5, 5, 3, 6))
    assert cl.cpu_plan(*lenet_first, spec).fwd.lowering == 's2d'
    with modes._constant(name, value):
        assert cl.cpu_plan(*lenet_first, spec).fwd.lowering == 'xla'
    assert cl.S2D_MAX_CHANNELS == 16 and cl.cpu_plan(*lenet_first, spec).fwd.lowering == 's2d'


@pytest.mark.parametrize('text', ['NOT_A_CONSTANT=1', 'S2D_MAX_CHANNELS=x', 'plan=1'])
def test_modes_constant_rejects_what_is_not_a_threshold(text):
    with pytest.raises(SystemExit, match='--constant'):
        modes._parse_constant(text)


def test_modes_times_a_variant_per_constant():
    results = modes.main(
        ['--arch', 'lenet', '--modes', 'heuristic', '--batch-size', '4', '--repeats', '1']
        + ['--constant', 'S2D_MAX_CHANNELS=0']
    )
    assert set(results['lenet']) == {'heuristic', 'heuristic+S2D_MAX_CHANNELS=0'}
    assert all(v > 0 for v in results['lenet'].values())
