"""benchmarks/profile_step.py reads XLA's trace back into ops it can name (never timed)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import profile_step

# A cut-down optimised HLO module of LeNet's train step, as ``Compiled.as_text()`` prints it:
# a YNN fusion that fuses a convolution without metadata (the weight gradient), an XLA
# convolution with its JAX source, and a pooling fusion whose source is its root's.
HLO = (Path(__file__).parent / 'data' / 'lenet_step_cut.hlo.txt').read_text()


def test_hlo_instructions_name_the_work_and_the_pass_of_each_op():
    table = profile_step.hlo_instructions(HLO)
    conv = table['conv_general_dilated.5']
    assert (conv['opcode'], conv['work'], conv['shape']) == (
        'convolution',
        'convolution',
        'f32[32,32,32,6]',
    )
    assert profile_step.jax_pass(conv['op_name']) == 'forward'
    # A fusion is the kind of what it fuses; without metadata its source is its root's.
    pool = table['ynn_fusion.11']
    assert (pool['work'], pool['fusion_kind']) == ('pooling', '__ynn_fusion')
    assert pool['op_name'] == 'jit(step)/jvp()/reduce_window_sum'
    dw = table['ynn_fusion']
    assert dw['work'] == 'convolution' and profile_step.jax_pass(dw['op_name']) == 'unknown'
    assert table['copy.32']['work'] == 'copy/layout'
    assert profile_step.jax_pass(table['wrapped_add']['op_name']) == 'update'
    assert table['tuple']['shape'].startswith('(f32[6]')
    assert profile_step.jax_pass('jit(step)/transpose(jvp())/conv_general_dilated') == 'backward'


class _Event:
    def __init__(self, name, start, duration, **stats):
        self.name, self.start_ns, self.duration_ns, self.stats = name, start, duration, stats


def test_a_thunk_is_charged_with_the_pool_tasks_it_schedules():
    # Thread A launches an Eigen dot (0.1 ms event) that schedules task 5; task 5 (thread B,
    # 3 ms) schedules task 6 (thread A, 2 ms). A YNN fusion (0.5 ms) runs its own task 7 (0.4 ms).
    # Task 9 is the executor's: it runs a thunk, whose time is that thunk's own.
    thread_a = [
        _Event('dot.4', 1_000_000, 100_000, hlo_op='dot.4'),
        _Event('ThreadpoolListener::Record', 1_050_000, 0, _p=5),
        _Event('ynn_fusion', 1_200_000, 500_000, hlo_op='ynn_fusion'),
        _Event('ThreadpoolListener::Record', 1_210_000, 0, _p=7),
        _Event('ThreadpoolListener::Record', 1_220_000, 0, _p=9),
        _Event('ThreadpoolListener::StartRegion', 2_000_000, 0, _c=6),
        _Event('ThreadpoolListener::StopRegion', 4_000_000, 0),
    ]
    thread_b = [
        _Event('ThreadpoolListener::StartRegion', 1_100_000, 0, _c=5),
        _Event('ThreadpoolListener::Record', 1_150_000, 0, _p=6),
        _Event('ThreadpoolListener::StopRegion', 4_100_000, 0),
        _Event('ThreadpoolListener::StartRegion', 4_200_000, 0, _c=7),
        _Event('ThreadpoolListener::StopRegion', 4_600_000, 0),
        _Event('ThreadpoolListener::StartRegion', 5_000_000, 0, _c=9),
        _Event('copy.3', 5_100_000, 200_000, hlo_op='copy.3'),
        _Event('ThreadpoolListener::StopRegion', 5_400_000, 0),
    ]
    timed = profile_step.thunk_cpu_times([thread_a, thread_b])
    times = {stats['hlo_op']: ns for stats, ns in timed}
    assert times == {'dot.4': 5_100_000, 'ynn_fusion': 900_000, 'copy.3': 200_000}


def test_torch_ops_fall_into_the_same_kinds():
    kinds = {
        'aten::mkldnn_convolution': ('convolution', 'forward'),
        'aten::convolution_backward': ('convolution', 'backward'),
        'aten::max_pool2d_with_indices_backward': ('pooling', 'backward'),
        'aten::native_batch_norm': ('normalisation', 'forward'),
        'aten::addmm': ('matmul', 'forward'),
        'aten::_foreach_add_': ('update', 'update'),
        'aten::threshold_backward': ('elementwise', 'backward'),
    }
    for name, (kind, pass_) in kinds.items():
        assert (profile_step.torch_kind(name), profile_step.torch_pass(name)) == (kind, pass_)


def test_a_tiny_profile_names_every_op_it_timed(tmp_path, capsys, monkeypatch):
    # XLA's convolution on every conv: the default plan runs LeNet's on banded matmuls
    monkeypatch.setenv('JAXCONV_CONV_LOWERING', 'xla')
    out = tmp_path / 'profile.json'
    records = profile_step.main(
        ['--arch', 'lenet', '--batch-size', '4', '--steps', '1', '--json', str(out)]
    )
    jx = records[0]['jaxconv']
    assert jx['ops'] and all(r['opcode'] != '?' for r in jx['ops'])
    assert jx['by_kind'].get('convolution', 0) > 0
    # the kinds share the op time out over the step
    assert abs(sum(jx['by_kind'].values()) - jx['step_ms']) < 1e-9
    assert abs(sum(jx['by_pass'].values()) - jx['step_ms']) < 1e-9
    torch_side = records[0]['torch_eager']
    assert torch_side['by_kind'].get('convolution', 0) > 0
    saved = json.loads(out.read_text())
    assert saved['meta']['cpu_model'] and saved['archs'][0]['arch'] == 'lenet'
    assert 'slowest' in capsys.readouterr().out
