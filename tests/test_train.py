"""train.py and jaxconv.training: the command line, the outputs, resuming, failure handling.

Runs on real Fashion-MNIST from ``shared/datasets`` (next to the repository), prepared once per
session into a temporary tfds directory (or ``$TFDS_DATA_DIR``). Every run is tiny (LeNet on a
few hundred images) except THE vgg11 command of the issue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import (
    FASHION_MNIST,
    REPO,
    checkpoint_leaves,
    checkpoint_steps,
    needs_data,
    read_jsonl,
    run_metrics,
    tiny_run,
)
from jaxconv.data import DATASETS
from jaxconv.optim import OPTIMIZERS
from jaxconv.registry import list_models
from jaxconv.training import TrainConfig, recipe_for, resolve
from jaxconv.training import loop as loop_module
from jaxconv.training.checkpoints import Checkpoints
from jaxconv.training.cli import build_parser, main
from jaxconv.training.config import config_differences, run_fields


def run_train_py(args, *, env=None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / 'train.py'), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        **kw,
    )


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------
def test_help_lists_every_option_arch_and_recipe():
    text = build_parser().format_help()
    for option in (
        '--arch',
        '--dataset',
        '--data-dir',
        '--image-size',
        '--batch-size',
        '--epochs',
        '--optimizer',
        '--lr',
        '--weight-decay',
        '--label-smoothing',
        '--seed',
        '--workdir',
        '--resume',
        '--limit-train',
        '--limit-eval',
        '--devices',
        '--overwrite',
        '--coordinator-address',
        '--num-processes',
        '--process-id',
    ):
        assert option in text
    for name in list(DATASETS) + list(OPTIMIZERS):
        assert name in text
    epilog = text[text.index('default recipe per arch') :]
    for arch in list_models():
        recipe = recipe_for(arch)
        row = next(line.split() for line in epilog.splitlines() if line.split()[:1] == [arch])
        assert row[1:5] == [
            str(recipe.image_size),
            str(recipe.batch_size),
            recipe.optimizer,
            f'{recipe.lr:g}',
        ], arch
        assert row[6] == str(recipe.epochs)


@pytest.mark.parametrize(
    'args, message',
    [
        (['--batch-size', '0'], '--batch-size must be a positive integer'),
        (['--batch-size', '-8'], '--batch-size must be a positive integer'),
        (['--epochs', '-1'], '--epochs must be a non-negative integer'),
        (['--lr', '0'], '--lr must be a positive number'),
        (['--lr', '-0.1'], '--lr must be a positive number'),
        (['--lr', 'nan'], '--lr must be a positive number'),
        (['--label-smoothing', '1'], '--label-smoothing must be in [0, 1)'),
        (['--label-smoothing', '-0.1'], '--label-smoothing must be in [0, 1)'),
        (['--arch', 'nonet'], "invalid choice: 'nonet'"),
        (['--dataset', 'imagenet'], "invalid choice: 'imagenet'"),
        (['--optimizer', 'lion'], "invalid choice: 'lion'"),
        (['--arch', 'vgg11', '--image-size', '16'], 'vgg11 needs image_size >= 32'),
        (['--devices', '64'], '--devices 64: only'),
        (['--limit-train', '10'], 'no full batch'),
        (['--resume', '--overwrite'], 'exclude each other'),
        (['--process-id', '1'], 'go together'),
    ],
)
def test_bad_arguments_give_one_argparse_error_and_write_nothing(tmp_path, capsys, args, message):
    workdir = tmp_path / 'run'
    argv = ['--arch', 'lenet', '--workdir', str(workdir), *args]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if 'error:' in line]
    assert len(error_lines) == 1 and message in error_lines[0], err
    if 'invalid choice' in message:  # argparse lists the valid choices
        assert 'choose from' in error_lines[0]
    assert 'Traceback' not in err
    assert not workdir.exists()


@pytest.mark.slow
@pytest.mark.parametrize('arch', list_models())
def test_every_default_recipe_builds_its_model(arch):
    """The recipe's image size suits the arch on Fashion-MNIST (1 channel), and the model's
    variables are all of the kinds the train state holds; ~1 min for all."""
    from jaxconv.training.loop import build_model
    from jaxconv.training.steps import split_model

    config = resolve(TrainConfig(arch=arch))
    split_model(build_model(config, DATASETS[config.dataset]))


def test_unknown_arch_lists_every_valid_arch(capsys):
    with pytest.raises(SystemExit):
        main(['--arch', 'nonet'])
    err = capsys.readouterr().err
    assert all(arch in err for arch in list_models())


def test_missing_data_is_one_message_without_traceback(tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    workdir = tmp_path / 'run'
    code = main(
        [
            '--arch',
            'lenet',
            '--data-dir',
            str(empty),
            '--tfds-dir',
            str(tmp_path / 'tfds'),
            '--workdir',
            str(workdir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith('train.py: data error: Fashion-MNIST') and 'was not found' in err
    assert 'Traceback' not in err
    assert not workdir.exists()


def test_readme_main_job_without_any_data_is_one_message(tmp_path, capsys, monkeypatch):
    """The quick start's ``train.py --arch vgg11`` on a machine with no prepared dataset, no
    Debian package and no network: exit 1 with the message naming every way to supply the
    data, nothing written (the lookups are pinned so the machine cannot change the outcome)."""
    from jaxconv.data import sources

    monkeypatch.setattr(sources, 'download_unreachable', lambda name: 'no network (test)')
    monkeypatch.setattr(
        sources,
        'find_os_package_files',
        lambda name: (None, 'OS package dataset-fashion-mnist: not installed'),
    )
    workdir = tmp_path / 'run'
    code = main(
        [
            '--arch',
            'vgg11',
            '--workdir',
            str(workdir),
            '--tfds-dir',
            str(tmp_path / 'tfds'),
            '--no-progress',
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith('train.py: data error: Fashion-MNIST'), err
    for needle in (
        'was not found',
        '--data-dir',
        'apt-get install dataset-fashion-mnist',
        'network access',
    ):
        assert needle in err
    assert 'Traceback' not in err and not workdir.exists()


# ------------------------------------------------------------------------------------------------
# A real (tiny) run and what it leaves in the workdir
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def lenet_run(tmp_path_factory, tfds_dir):
    """One tiny LeNet run through ``main``; its workdir is shared by the tests below (read only)."""
    if not FASHION_MNIST.is_dir():
        pytest.skip(f'Fashion-MNIST not found at {FASHION_MNIST}')
    workdir = tmp_path_factory.mktemp('lenet') / 'run'
    assert main(tiny_run(workdir, tfds_dir)) == 0
    return workdir


def test_run_writes_metrics_summary_curves_and_checkpoints(lenet_run):
    records = read_jsonl(lenet_run / 'metrics.jsonl')
    assert [r['epoch'] for r in records] == [0, 1]
    for r in records:
        for key in ('train_loss', 'train_accuracy', 'test_loss', 'test_accuracy', 'images_per_sec'):
            assert np.isfinite(r[key]), key
        assert 0 <= r['test_accuracy'] <= 1
    assert records[1]['step'] == 2 * 512 // 64
    summary = json.loads((lenet_run / 'summary.json').read_text())
    for key in (
        'arch',
        'dataset',
        'epochs',
        'final_test_accuracy',
        'best_test_accuracy',
        'images_per_sec',
        'wall_seconds',
        'config',
    ):
        assert summary[key] is not None, key
    assert summary['arch'] == 'lenet' and summary['dataset'] == 'fashion_mnist'
    assert summary['epochs'] == 2
    assert summary['final_test_accuracy'] == records[-1]['test_accuracy']
    assert summary['best_test_accuracy'] == max(r['test_accuracy'] for r in records)
    assert summary['config']['batch_size'] == 64 and summary['config']['image_size'] == 28
    assert (lenet_run / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert checkpoint_steps(lenet_run) == [8, 16]


def test_tiny_lenet_learns(lenet_run):
    records = read_jsonl(lenet_run / 'metrics.jsonl')
    # 16 Adam steps from chance (2.30): the loss must go down, whatever the exact figure.
    assert records[-1]['train_loss'] < records[0]['train_loss'] < 2.5


def test_new_run_in_used_workdir_refuses_without_overwrite(lenet_run, capsys):
    before = (lenet_run / 'metrics.jsonl').read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(['--arch', 'lenet', '--workdir', str(lenet_run)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'already holds a run' in err and '--resume' in err and '--overwrite' in err
    assert (lenet_run / 'metrics.jsonl').read_text() == before


def test_resume_with_other_settings_names_the_differences(lenet_run, tfds_dir, capsys):
    before = (lenet_run / 'metrics.jsonl').read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_run(lenet_run, tfds_dir, '--resume', '--lr', '0.5', '--image-size', '32'))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'different configuration' in err
    assert f'lr: {recipe_for("lenet").lr!r} -> 0.5' in err and 'image_size: 28 -> 32' in err
    assert (lenet_run / 'metrics.jsonl').read_text() == before


@needs_data
def test_overwrite_deletes_the_old_run(lenet_run, tfds_dir, tmp_path):
    import shutil

    workdir = tmp_path / 'copy'
    shutil.copytree(lenet_run, workdir)
    (workdir / 'notes.txt').write_text('not ours')
    assert main(tiny_run(workdir, tfds_dir, '--overwrite', '--epochs', '0')) == 0
    assert not (workdir / 'metrics.jsonl').exists() or read_jsonl(workdir / 'metrics.jsonl') == []
    assert not (workdir / 'curves.png').exists()
    assert Checkpoints(workdir).all_steps() == []
    assert json.loads((workdir / 'summary.json').read_text())['epochs'] == 0
    assert json.loads((workdir / 'config.json').read_text())['config']['epochs'] == 0
    assert (workdir / 'notes.txt').read_text() == 'not ours'  # only the run's own outputs go


@needs_data
def test_resume_of_a_finished_run_changes_nothing(lenet_run, tfds_dir, tmp_path):
    import shutil

    workdir = tmp_path / 'copy'
    shutil.copytree(lenet_run, workdir)
    assert main(tiny_run(workdir, tfds_dir, '--resume')) == 0
    assert read_jsonl(workdir / 'metrics.jsonl') == read_jsonl(lenet_run / 'metrics.jsonl')


def test_epochs_may_change_on_resume_only_with_a_constant_schedule():
    base = resolve(TrainConfig(arch='lenet', epochs=2, schedule='constant'))
    assert config_differences(run_fields(base), base.replace(epochs=5)) == []
    cosine = base.replace(schedule='cosine')
    assert config_differences(run_fields(cosine), cosine.replace(epochs=5)) == ['epochs: 2 -> 5']


def test_a_run_saved_before_a_field_existed_resumes_with_its_default():
    """config.json of a run made before --dtype existed has no 'dtype': it was float32."""
    config = resolve(TrainConfig(arch='lenet'))
    saved = {k: v for k, v in run_fields(config).items() if k != 'dtype'}
    assert config_differences(saved, config) == []
    assert config_differences(saved, config.replace(dtype='float64')) == [
        "dtype: 'float32' -> 'float64'"
    ]


def test_a_run_saved_before_augment_existed_resumes_as_none():
    """A run saved before --augment existed trained without augmentation: it resumes as 'none',
    and a CIFAR run of then (whose default is now crop-flip) must say --augment none."""
    config = resolve(TrainConfig(arch='lenet'))
    saved = {
        k: v
        for k, v in run_fields(config).items()
        if k not in ('augment', 'channels', 'val_fraction')
    }
    assert config.augment == 'none' and config_differences(saved, config) == []
    cifar = resolve(TrainConfig(arch='resnet18', dataset='cifar10'))
    assert cifar.augment == 'crop-flip'
    saved = {k: v for k, v in run_fields(cifar).items() if k != 'augment'}
    assert config_differences(saved, cifar) == ["augment: 'none' -> 'crop-flip'"]
    assert config_differences(saved, cifar.replace(augment='none')) == []


@needs_data
def test_float64_run_keeps_float64_parameters(tfds_dir, tmp_path):
    """--dtype float64 (x64 is process-wide: a fresh interpreter) trains float64 weights."""
    workdir = tmp_path / 'f64'
    proc = run_train_py(
        [
            *tiny_run(
                workdir,
                tfds_dir,
                '--dtype',
                'float64',
                '--epochs',
                '1',
                '--limit-train',
                '128',
                '--limit-eval',
                '64',
            )
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((workdir / 'config.json').read_text())['config']['dtype'] == 'float64'
    code = (
        'import sys, jax; jax.config.update("jax_enable_x64", True); sys.path.insert(0, "tests");'
        'from conftest import checkpoint_leaves; import numpy as np;'
        f'_, leaves = checkpoint_leaves({str(workdir)!r});'
        'print(sorted({str(x.dtype) for x in leaves if np.issubdtype(x.dtype, np.floating)}))'
    )
    out = subprocess.run(
        [sys.executable, '-c', code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "['float64']"


@needs_data
def test_label_smoothing_reaches_the_train_step_and_the_run_record(tfds_dir, tmp_path, monkeypatch):
    seen = {}
    real = loop_module.train_steps.make_train_step

    def make(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module.train_steps, 'make_train_step', make)
    workdir = tmp_path / 'run'
    argv = tiny_run(workdir, tfds_dir, '--label-smoothing', '0.2', epochs=1, limit_train=64)
    assert main(argv) == 0
    assert seen['label_smoothing'] == 0.2
    record = json.loads((workdir / 'config.json').read_text())
    assert record['config']['label_smoothing'] == record['run']['label_smoothing'] == 0.2


# ------------------------------------------------------------------------------------------------
# Resuming gives the run that was never interrupted
# ------------------------------------------------------------------------------------------------
def raise_signal_at(step: int, signum: int, monkeypatch):
    """Make the train step send ``signum`` to this process just before global step ``step``."""
    real = loop_module.train_steps.make_train_step

    def make(*args, **kwargs):
        step_fn = real(*args, **kwargs)

        def wrapped(state, rngs, x, y):
            if int(state['step']) == step:
                signal.raise_signal(signum)
            return step_fn(state, rngs, x, y)

        return wrapped

    monkeypatch.setattr(loop_module.train_steps, 'make_train_step', make)


@needs_data
@pytest.mark.parametrize('augment', ['none', 'crop-flip'])
def test_interrupted_mid_epoch_resumes_exactly(tfds_dir, tmp_path, monkeypatch, augment):
    """SIGINT during epoch 1 (32 steps of 16): the run stops at the next metrics fetch (after
    steps 1, 11, 21, ...: step 21), checkpoints mid-epoch with the epoch's partial sums, exits
    130; --resume continues from step 21 with the same batches, dropout masks and (with
    --augment) crops and flips, ending bit-identical to an uninterrupted run.
    """

    def args(workdir):
        return tiny_run(
            workdir, tfds_dir, '--batch-size', '16', '--augment', augment, arch='mlp_dropout'
        )

    assert main(args(tmp_path / 'reference')) == 0

    workdir = tmp_path / 'interrupted'
    with monkeypatch.context() as patch:
        raise_signal_at(12, signal.SIGINT, patch)
        assert main(args(workdir)) == 128 + signal.SIGINT
    ckpts = Checkpoints(workdir)
    assert ckpts.all_steps() == [21]
    _, meta = ckpts.restore(21)
    ckpts.close()
    assert (meta['epoch'], meta['step_in_epoch'], meta['partial']['steps']) == (0, 21, 21)
    assert not (workdir / 'metrics.jsonl').read_text()

    assert main([*args(workdir), '--resume']) == 0
    assert run_metrics(workdir) == run_metrics(tmp_path / 'reference')
    (step_a, leaves_a) = checkpoint_leaves(tmp_path / 'reference')
    (step_b, leaves_b) = checkpoint_leaves(workdir)
    assert step_a == step_b == 64
    for a, b in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(a, b)


@needs_data
def test_resume_with_autotuning_computes_with_the_runs_recorded_plan(
    tfds_dir, tmp_path, monkeypatch
):
    """Autotuning on: the run records its conv plans in conv_plan.json; after an interruption
    the cache is rewritten to other plans (as a noisy re-measure could), and --resume still
    ends bit-identical to the uninterrupted run, because it pins the recorded plans."""
    from jaxconv import conv_autotune, conv_lowering

    cache = tmp_path / 'cache'
    monkeypatch.setenv(conv_lowering.MODE_ENV, 'autotune')
    monkeypatch.setenv(conv_autotune.CACHE_ENV, str(cache))
    conv_autotune.forget()
    args = lambda workdir: tiny_run(workdir, tfds_dir, '--batch-size', '16')  # noqa: E731
    assert main(args(tmp_path / 'reference')) == 0
    recorded = json.loads((tmp_path / 'reference' / 'conv_plan.json').read_text())
    assert recorded['mode'] == 'autotune' and len(recorded['plans']) == 2  # LeNet's two convs

    workdir = tmp_path / 'interrupted'
    with monkeypatch.context() as patch:
        raise_signal_at(12, signal.SIGINT, patch)
        assert main(args(workdir)) == 128 + signal.SIGINT

    # Another winner for every conv: a fresh run would now compute with other plans.
    cache_file = conv_autotune.cache_file()
    data = json.loads(cache_file.read_text())
    for entry in data['plans'].values():
        entry['plan'] = (
            'im2col/taps/im2col' if entry['plan'] != 'im2col/taps/im2col' else 'xla/xla/xla'
        )
    cache_file.write_text(json.dumps(data))
    conv_autotune.forget()

    assert main([*args(workdir), '--resume']) == 0
    assert json.loads((workdir / 'conv_plan.json').read_text())['plans'] == recorded['plans']
    assert run_metrics(workdir) == run_metrics(tmp_path / 'reference')
    for a, b in zip(
        checkpoint_leaves(tmp_path / 'reference')[1], checkpoint_leaves(workdir)[1], strict=True
    ):
        np.testing.assert_array_equal(a, b)

    assert main(args(tmp_path / 'fresh')) == 0  # the rewritten cache does reach a new run
    fresh = json.loads((tmp_path / 'fresh' / 'conv_plan.json').read_text())['plans']
    assert fresh.keys() == recorded['plans'].keys() and fresh != recorded['plans']
    conv_autotune.forget()


@needs_data
def test_sigterm_then_resume_equals_uninterrupted(tfds_dir, tmp_path):
    """A real signal from outside, once the first checkpoint is written: train.py checkpoints
    and exits 143; --resume then finishes the run with the same metrics.jsonl and bit-identical
    final parameters as a run never interrupted."""
    args = lambda workdir: tiny_run(workdir, tfds_dir, '--epochs', '3')  # noqa: E731
    reference = tmp_path / 'reference'
    assert main(args(reference)) == 0

    interrupted = tmp_path / 'interrupted'
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / 'train.py'), *args(interrupted)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # the loop prints this line once the first checkpoint is complete
        if 'checkpoint 8 saved' in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert 'interrupted by signal' in out and '--resume' in out
    ckpts = Checkpoints(interrupted)
    stopped_at = ckpts.latest_step()
    ckpts.close()
    assert 8 <= stopped_at < 24
    assert not (interrupted / 'summary.json').exists()

    resumed = run_train_py([*args(interrupted), '--resume'])
    assert resumed.returncode == 0, resumed.stderr
    assert f'resuming from checkpoint {stopped_at}' in resumed.stdout
    assert run_metrics(interrupted) == run_metrics(reference)
    (step_a, leaves_a), (step_b, leaves_b) = map(checkpoint_leaves, (reference, interrupted))
    assert step_a == step_b == 24
    for a, b in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# Divergence
# ------------------------------------------------------------------------------------------------
@needs_data
def test_nonfinite_loss_stops_and_keeps_the_last_good_epoch(
    tfds_dir, tmp_path, capsys, monkeypatch
):
    """The loss turns NaN at global step 11 (epoch 2): exit 1 naming the step; epoch 1's metrics
    line and checkpoint stay, nothing of epoch 2 is written."""
    real = loop_module.train_steps.make_train_step

    def poisoned(*args, **kwargs):
        step_fn = real(*args, **kwargs)

        def step(state, rngs, x, y):
            first = int(state['step'])
            state, metrics = step_fn(state, rngs, x, y)
            if first == 11:
                metrics = {**metrics, 'loss': metrics['loss'] * np.nan}
            return state, metrics

        return step

    monkeypatch.setattr(loop_module.train_steps, 'make_train_step', poisoned)
    workdir = tmp_path / 'run'
    assert main(tiny_run(workdir, tfds_dir)) == 1
    err = capsys.readouterr().err
    assert 'loss is nan at step 11 (epoch 2, batch 4 of 8)' in err and 'Traceback' not in err
    assert 'the last good checkpoint (step 8) and metrics are kept' in err
    assert [r['epoch'] for r in read_jsonl(workdir / 'metrics.jsonl')] == [0]
    assert checkpoint_steps(workdir) == [8]
    assert not (workdir / 'summary.json').exists()


@needs_data
def test_a_real_divergence_is_caught(tfds_dir, tmp_path, capsys):
    workdir = tmp_path / 'run'
    code = main(tiny_run(workdir, tfds_dir, '--optimizer', 'sgd', '--lr', '1e38', arch='mlp'))
    err = capsys.readouterr().err
    assert code == 1, err
    assert 'the training loss is inf at step 1 (epoch 1' in err
    assert 'no checkpoint was written yet' in err


# ------------------------------------------------------------------------------------------------
# THE command of the issue
# ------------------------------------------------------------------------------------------------
VGG11_COMMAND = [
    '--arch',
    'vgg11',
    '--data-dir',
    str(FASHION_MNIST),
    '--epochs',
    '1',
    '--limit-train',
    '2048',
    '--limit-eval',
    '512',
]


@pytest.mark.slow
@needs_data
def test_vgg11_command_runs_end_to_end(tfds_dir, tmp_path):
    workdir = tmp_path / 'vgg11'
    result = run_train_py(
        [*VGG11_COMMAND, '--workdir', str(workdir), '--tfds-dir', tfds_dir], timeout=3600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = 2048 // recipe_for('vgg11').batch_size
    records = read_jsonl(workdir / 'metrics.jsonl')
    assert len(records) == 1 and records[0]['step'] == steps
    assert np.isfinite(records[0]['test_loss']) and 0 <= records[0]['test_accuracy'] <= 1
    summary = json.loads((workdir / 'summary.json').read_text())
    assert summary['arch'] == 'vgg11' and summary['config']['image_size'] == 32
    assert summary['final_test_accuracy'] == records[0]['test_accuracy']
    assert (workdir / 'curves.png').read_bytes()[:4] == b'\x89PNG'
    assert checkpoint_steps(workdir) == [steps]
