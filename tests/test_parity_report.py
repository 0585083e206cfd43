"""The per-layer diff report (``python -m parity``): a table row per layer, exit status 0 within
tolerance and 1 otherwise, the first failing row naming the layer a broken weight is in, and
clear argument errors. Also the README table (``parity.report_table``)."""

from __future__ import annotations

import numpy as np
import pytest

import parity.__main__ as cli
from jaxconv import layers as L
from parity import report_table
from parity.compare import layer_diff
from parity.pair import make_pair
from parity.precision import exact_numerics


def break_weight(pair, layer_name: str, factor: float = 1.01):
    """Scale one Flax layer's kernel (not the twin's) by ``factor``."""
    layer = dict(L.named_layers(pair.flax))[layer_name]
    with exact_numerics():  # float64 arithmetic outside it would be float32
        layer.kernel[...] = layer.kernel[...] * factor
    return pair


@pytest.mark.parametrize(
    'dtype,arch,layer',
    [
        ('float64', 'resnet18', 'net.2.0.conv2'),  # inside a residual block, after conv1 ran
        ('float32', 'lenet', 'net.3'),
    ],
)
def test_a_broken_weight_is_the_first_failing_layer(dtype, arch, layer):
    pair = break_weight(make_pair(arch, dtype, batch_size=2), layer)
    report = layer_diff(pair)
    names = [f.name for f in report.figures]
    assert report.first_failure is not None and report.first_failure.name == layer
    assert all(f.ok for f in report.figures[: names.index(layer)])  # upstream rows pass


def test_cli_prints_every_layer_and_exits_0(capsys):
    assert cli.main(['--arch', 'lenet', '--batch-size', '2']) == 0
    out = capsys.readouterr().out
    for name in ['net.0', 'net.1', 'net.3', 'net.11']:
        assert f'\n{name} ' in out
    assert 'every row within tolerance' in out


def test_cli_train_mode_grads_and_steps(capsys):
    argv = [
        '--arch',
        'resnet18',
        '--mode',
        'train',
        '--grads',
        '--steps',
        '2',
        '--dtype',
        'float64',
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert 'net.1.0.bn1.running_var' in out  # BatchNorm buffer rows (train mode)
    assert 'grad net.0.0.weight' in out  # --grads rows
    assert 'loss@0' in out and 'loss@1' in out and 'final net.5.2.weight' in out  # --steps


def test_cli_exits_1_and_names_the_broken_layer(monkeypatch, capsys):
    real = cli.make_pair
    monkeypatch.setattr(cli, 'make_pair', lambda *a, **k: break_weight(real(*a, **k), 'net.7'))
    assert cli.main(['--arch', 'lenet', '--batch-size', '2']) == 1
    out = capsys.readouterr().out
    assert "MISMATCH; first at 'net.7'" in out


@pytest.mark.parametrize(
    'argv,message',
    [
        (['--arch', 'resnet99'], "argument --arch: invalid choice: 'resnet99'"),
        (['--arch', 'lenet', '--dtype', 'float16'], "argument --dtype: invalid choice: 'float16'"),
        (['--arch', 'lenet', '--batch-size', '0'], 'expected a positive integer, got 0'),
        (['--arch', 'lenet', '--steps', '-3'], 'expected a positive integer, got -3'),
        (['--arch', 'lenet', '--image-size', '8'], 'lenet needs image_size >= 12, got 8'),
        (['--mode', 'eval'], 'the following arguments are required: --arch'),
        (['--arch', 'vgg11', '--dropout', 'shared'], '--dropout shared needs --mode train'),
    ],
)
def test_cli_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_report_table_rows():
    rows = report_table.measure(['lenet'], steps=2)
    assert [(r.arch, r.dtype) for r in rows] == [('lenet', 'float32'), ('lenet', 'float64')]
    text = report_table.markdown(rows)
    assert text.splitlines()[0].startswith('| arch | dtype |')
    assert '| lenet | float64 |' in text
    for row in rows:
        assert all(np.isfinite(v) for v in row.errors.values())


def test_a_module_run_twice_is_compared_call_by_call():
    """torchvision's BasicBlock runs one ``relu`` module twice: each call gets its own row."""
    report = layer_diff(
        make_pair('tv_resnet18', 'float32', image_size=33, batch_size=2), batch_size=2
    )
    names = {f.name for f in report.figures}
    assert {'layer1.0.relu (call 1)', 'layer1.0.relu (call 2)'} <= names
    assert 'layer1.0.relu' not in names
    assert report.ok and not report.notes, report.table(only_failures=True)
