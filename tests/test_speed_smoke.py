"""benchmarks/speed.py runs end to end and writes the figures it promises (never timed).

One tiny arch, one timed run per variant, no torch.compile: this checks the plumbing (both
frameworks, train and forward, the data pipeline, the JSON keys), not the speed.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import speed
from jaxconv import conv_lowering


def test_image_size_arguments_set_a_default_and_per_arch_overrides():
    assert speed.parse_image_sizes([]) == (None, {})
    assert speed.parse_image_sizes(['64', 'alexnet=224,nin=96']) == (
        64,
        {'alexnet': 224, 'nin': 96},
    )


def test_archs_too_big_for_32_default_to_their_minimum_and_say_so():
    size, why = speed.resolve_image_size('alexnet', None, {})
    assert size > 32 and 'minimum' in why
    assert speed.resolve_image_size('alexnet', None, {'alexnet': 224}) == (
        224,
        'set with --image-size',
    )
    assert speed.resolve_image_size('lenet', None, {}) == (32, 'default')


def test_all_skips_torchvision_models_unless_asked():
    archs, skipped = speed.select_archs('all', include_tv=False)
    assert archs and not any(a.startswith('tv_') for a in archs)
    assert all(a.startswith('tv_') for a in skipped)
    with pytest.raises(SystemExit, match='unknown arch'):
        speed.select_archs('nonet', include_tv=False)


def test_smoke_run_writes_the_promised_json(tmp_path, capsys):
    out = tmp_path / 'speed.json'
    speed.main(
        [
            '--arch',
            'lenet',
            '--batch-size',
            '16',
            '--repeats',
            '1',
            '--warmup',
            '1',
            '--min-run-s',
            '0',
            '--no-compile',
            '--json',
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert 'jaxconv / best torch' in printed and 'summary' in printed
    data = json.loads(out.read_text())
    for key in (
        'jax_train_img_s',
        'torch_best_train_img_s',
        'ratio_train',
        'jax_forward_img_s',
        'torch_best_forward_img_s',
        'ratio_forward',
        'train_gflop_per_image',
        'jax_train_matmul_fraction',
    ):
        assert isinstance(data[key], float) and data[key] > 0, key
    variants = data['variants']
    assert set(variants) == {'jaxconv', 'torch_eager', 'torch_channels_last'}
    for name, entry in variants.items():
        assert entry['train_img_s'] > 0 and entry['forward_img_s'] > 0, name
    assert variants['jaxconv']['train_compile_s'] > 0
    meta = data['meta']
    assert meta['matmul_gflops_2048']['jax'] > 0
    assert meta['data_pipeline']['batches_per_s'] > 0
    assert data['archs']['lenet']['image_size'] == 32
    # Where it ran and how the convolutions were lowered; the first step, warm and cold.
    assert meta['cpu_model'] and meta['cpu_isa'] and meta['autotune_cache']
    assert meta['conv_lowering_mode'] in conv_lowering.MODES
    assert sum(data['conv_plans'].values()) == 2  # LeNet's two convolutions
    assert data['first_step_s'] > 0 and data['first_step_cold_s'] > 0
