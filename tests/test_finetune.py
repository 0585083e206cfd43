"""Weights in and out: ``train.py --init-from`` / ``--trainable``, ``jaxconv.export``,
``jaxconv.evaluate``, ``jaxconv.predict`` and the ``jaxconv`` command.

The default suite fine-tunes the course MLP (it learns in seconds, so evaluate and predict have
real predictions to agree on) from its torch twin's state_dict saved with ``torch.save``, with a
head of another class count. The slow set runs the issue's case: a torchvision ResNet-18
fine-tuned as ``tv_resnet18`` on 1-channel Fashion-MNIST, exported and loaded back into
torchvision.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from PIL import Image

import parity
from conftest import FASHION_MNIST, REPO, needs_data
from jaxconv.data import DATASETS, load_split, preprocess
from jaxconv.evaluate import main as evaluate_main
from jaxconv.export import main as export_main
from jaxconv.predict import main as predict_main
from jaxconv.runs import load_run
from jaxconv.training.checkpoints import Checkpoints
from jaxconv.training.cli import main as train_main
from jaxconv.weights import sha256
from parity.tv import import_torchvision

SPEC = DATASETS['fashion_mnist']

# A subprocess in which ``import torch`` fails, as on a machine without torch.
NO_TORCH = """
import runpy, sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked in this test')
sys.meta_path.insert(0, _NoTorch())
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)
"""


def mlp_args(tfds_dir, workdir, *extra) -> list[str]:
    """An MLP run of a few seconds: 512 training images, 2 epochs, 128 test images."""
    return [
        '--arch',
        'mlp',
        '--data-dir',
        str(FASHION_MNIST),
        '--tfds-dir',
        tfds_dir,
        '--no-progress',
        '--workdir',
        str(workdir),
        '--limit-train',
        '512',
        '--limit-eval',
        '128',
        '--batch-size',
        '32',
        '--epochs',
        '2',
        *extra,
    ]


def run_main(main, argv) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def torch_twin(arch: str, image_size: int, **kw) -> torch.nn.Module:
    return parity.torch_model(
        arch, num_classes=kw.pop('num_classes', 10), in_channels=1, image_size=image_size, **kw
    )


def first_test_images(tfds_dir, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_split('fashion_mnist', 'test', data_dir=FASHION_MNIST, tfds_dir=tfds_dir)
    return x[:n], y[:n]


def assert_same_logits(run_dir, weights: dict, tfds_dir, twin: torch.nn.Module):
    """The torch twin loaded strictly with ``weights`` gives jaxconv's logits on test images."""
    twin.load_state_dict(weights, strict=True)
    twin.eval()
    run = load_run(run_dir)
    x, _ = first_test_images(tfds_dir, 16)
    inputs = preprocess(x, image_size=run.config.image_size, mean=SPEC.mean, std=SPEC.std)
    ours = np.asarray(run.model(inputs))
    with torch.no_grad():
        theirs = twin(torch.from_numpy(np.array(inputs).transpose(0, 3, 1, 2))).numpy()
    error = np.abs(ours - theirs).max() / np.abs(theirs).max()
    assert error <= 1e-5, error


@pytest.fixture(scope='module')
def mlp_source(tmp_path_factory) -> Path:
    """The MLP's torch twin, 5 classes (so the head is re-initialised for 10), torch.save'd."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('source') / 'mlp5.pth'
    torch.save(torch_twin('mlp', 28, num_classes=5).state_dict(), path)
    return path


@pytest.fixture(scope='module')
def mlp_run(tfds_dir, tmp_path_factory, mlp_source):
    """A fine-tuned MLP run: (workdir, train.py's stdout)."""
    if not FASHION_MNIST.is_dir():
        pytest.skip(f'Fashion-MNIST not found at {FASHION_MNIST}')
    workdir = tmp_path_factory.mktemp('runs') / 'mlp'
    code, out, err = run_main(
        train_main, mlp_args(tfds_dir, workdir, '--init-from', str(mlp_source))
    )
    assert code == 0, err[-3000:]
    return workdir, out


# ------------------------------------------------------------------------------------------------
# --init-from
# ------------------------------------------------------------------------------------------------
@needs_data
def test_init_from_reports_the_head_and_records_the_source(mlp_run, mlp_source):
    workdir, out = mlp_run
    lines = [line for line in out.splitlines() if line.startswith('--init-from: ')]
    assert lines == [
        '--init-from: net.3.weight: head re-initialised for 10 classes (the weights have 5)',
        '--init-from: net.3.bias: head re-initialised for 10 classes (the weights have 5)',
    ]
    config = json.loads((workdir / 'config.json').read_text())
    assert config['config']['init_from'] == str(mlp_source.resolve())
    assert config['config']['init_sha256'] == config['run']['init_sha256'] == sha256(mlp_source)
    assert config['run']['trainable'] == 'all'


def test_init_from_copies_every_other_tensor(tmp_path, mlp_source):
    from jaxconv.registry import create_model
    from jaxconv.training import TrainConfig, resolve
    from jaxconv.training.finetune import initialise
    from jaxconv.weights import state_dict

    config = resolve(
        TrainConfig(arch='mlp', workdir=str(tmp_path / 'w'), init_from=str(mlp_source))
    )
    model = create_model('mlp', num_classes=10, in_channels=1, image_size=28)
    logged = []
    config = initialise(config, model, log=logged.append)
    source = torch.load(mlp_source, weights_only=True)
    got = state_dict(model)
    assert [k for k in got if not np.array_equal(got[k], source[k].numpy())] == [
        'net.3.weight',
        'net.3.bias',
    ]
    assert config.init_sha256 == sha256(mlp_source) and len(logged) == 3
    assert not (tmp_path / 'w').exists()


@needs_data
@pytest.mark.parametrize(
    'case', ['pickled code', 'a whole module', 'not a dict', 'another arch', 'damaged safetensors']
)
def test_a_bad_weight_file_is_one_clear_error_and_nothing_is_written(
    case,
    tfds_dir,
    tmp_path,
):
    class Code:
        def __reduce__(self):
            return (os.system, ('touch ' + str(tmp_path / 'pwned'),))

    path = tmp_path / ('w.safetensors' if case == 'damaged safetensors' else 'w.pth')
    if case == 'pickled code':
        torch.save({'net.1.weight': Code()}, path)
    elif case == 'a whole module':
        torch.save(torch_twin('mlp', 28), path)
    elif case == 'not a dict':
        torch.save([torch.zeros(3)], path)
    elif case == 'another arch':
        torch.save(torch_twin('lenet', 28).state_dict(), path)
    else:
        path.write_bytes(b'\x08\x00\x00\x00\x00\x00\x00\x00{"a": 1}')
    workdir = tmp_path / 'run'
    code, out, err = run_main(train_main, mlp_args(tfds_dir, workdir, '--init-from', str(path)))
    assert code == 2, err
    assert 'Traceback' not in err
    message = [line for line in err.splitlines() if line.startswith('train.py: error: ')]
    assert len(message) == 1 and str(path) in message[0], err
    if case == 'another arch':
        for key in ('net.0.weight', 'net.1.weight', 'net.3.weight', 'net.11.bias'):
            assert key in err  # every missing and every unexpected key, listed
    assert not workdir.exists() and not (tmp_path / 'pwned').exists()


@needs_data
def test_resume_takes_over_the_recorded_source_and_refuses_changed_weights(
    mlp_run, tfds_dir, tmp_path
):
    import shutil

    workdir = shutil.copytree(mlp_run[0], tmp_path / 'run')
    recorded = json.loads((workdir / 'config.json').read_text())['config']
    code, _, err = run_main(train_main, mlp_args(tfds_dir, workdir, '--resume'))
    assert code == 0, err[-3000:]
    again = json.loads((workdir / 'config.json').read_text())['config']
    assert (again['init_from'], again['init_sha256']) == (
        recorded['init_from'],
        recorded['init_sha256'],
    )
    torch.manual_seed(1)
    other = tmp_path / 'other.pth'
    torch.save(torch_twin('mlp', 28, num_classes=5).state_dict(), other)
    code, _, err = run_main(
        train_main, mlp_args(tfds_dir, workdir, '--resume', '--init-from', str(other))
    )
    assert code == 2 and 'init_sha256' in err and 'cannot resume' in err, err


# ------------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------------
@needs_data
def test_export_pt_loads_strictly_into_the_twin_with_the_same_logits(mlp_run, tfds_dir, tmp_path):
    workdir, _ = mlp_run
    out = tmp_path / 'mlp.pt'
    code, stdout, err = run_main(export_main, [str(workdir), '--out', str(out)])
    assert code == 0, err
    assert "parity.torch_model('mlp', num_classes=10, in_channels=1, image_size=28)" in stdout
    assert_same_logits(workdir, torch.load(out, weights_only=True), tfds_dir, torch_twin('mlp', 28))


@needs_data
def test_export_at_an_earlier_step(mlp_run, tmp_path):
    workdir, _ = mlp_run
    steps = Checkpoints(workdir).all_steps()
    code, _, err = run_main(
        export_main,
        [str(workdir), '--out', str(tmp_path / 'a.safetensors'), '--step', str(min(steps))],
    )
    assert code == 0, err
    code, _, err = run_main(
        export_main, [str(workdir), '--out', str(tmp_path / 'b.pt'), '--step', '999']
    )
    assert code == 1 and 'no checkpoint 999' in err and not (tmp_path / 'b.pt').exists()


@needs_data
def test_safetensors_in_and_out_without_torch(mlp_source, tfds_dir, tmp_path):
    """--init-from a .safetensors file and export to one, where importing torch fails."""
    from safetensors.numpy import save_file

    source = tmp_path / 'mlp5.safetensors'
    save_file(
        {k: v.numpy() for k, v in torch.load(mlp_source, weights_only=True).items()}, str(source)
    )
    workdir, out = tmp_path / 'run', tmp_path / 'out.safetensors'
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    outputs = []
    for argv in (
        ['train', *mlp_args(tfds_dir, workdir, '--epochs', '1', '--init-from', str(source))],
        ['export', str(workdir), '--out', str(out)],
    ):
        proc = subprocess.run(
            [sys.executable, '-c', NO_TORCH, 'jaxconv', *argv],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs.append(proc.stdout)
    assert 'net.3.weight: head re-initialised for 10 classes' in outputs[0]
    assert f'to {out}' in outputs[1]
    from safetensors.numpy import load_file

    weights = {k: torch.from_numpy(v) for k, v in load_file(str(out)).items()}
    assert_same_logits(workdir, weights, tfds_dir, torch_twin('mlp', 28))


# ------------------------------------------------------------------------------------------------
# --trainable head
# ------------------------------------------------------------------------------------------------
def flat_params(workdir, step=None) -> dict[str, np.ndarray]:
    run = load_run(workdir, step)
    return {
        '.'.join(map(str, p)): np.asarray(v[...])
        for p, v in nnx.to_flat_state(nnx.state(run.model, (nnx.Param, nnx.BatchStat)))
    }


@needs_data
def test_trainable_head_changes_only_the_head_bit_for_bit(
    mlp_run,
    tfds_dir,
    tmp_path,
):
    source_dir, _ = mlp_run
    workdir = tmp_path / 'head'
    code, out, err = run_main(
        train_main,
        mlp_args(
            tfds_dir,
            workdir,
            '--epochs',
            '1',
            '--init-from',
            str(source_dir),
            '--trainable',
            'head',
        ),
    )
    assert code == 0, err[-3000:]
    assert '--init-from: ' not in out  # same arch, same classes: nothing to adapt
    before, after = flat_params(source_dir), flat_params(workdir)
    changed = sorted(k for k in before if before[k].tobytes() != after[k].tobytes())
    assert changed == ['net.layers.3.bias', 'net.layers.3.kernel']
    config = json.loads((workdir / 'config.json').read_text())['config']
    assert config['init_step'] == max(Checkpoints(source_dir).all_steps())


# ------------------------------------------------------------------------------------------------
# evaluate and predict
# ------------------------------------------------------------------------------------------------
@needs_data
def test_evaluate_reproduces_the_recorded_final_accuracy(mlp_run):
    workdir, _ = mlp_run
    code, out, err = run_main(evaluate_main, [str(workdir)])
    assert code == 0, err
    summary = json.loads((workdir / 'summary.json').read_text())
    last = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()][-1]
    step = max(Checkpoints(workdir).all_steps())
    report = json.loads((workdir / 'evaluation' / f'test-step{step}.json').read_text())
    assert report['accuracy'] == summary['final_test_accuracy'] == last['test_accuracy']
    assert report['loss'] == summary['final_test_loss']
    assert report['examples'] == 128 and np.asarray(report['confusion']).sum() == 128
    assert np.trace(np.asarray(report['confusion'])) == round(report['accuracy'] * 128)
    assert len(report['per_class_accuracy']) == 10 and report['images_per_sec'] > 0
    assert (workdir / 'evaluation' / f'test-step{step}-confusion.png').stat().st_size > 0
    assert f'top-1 accuracy {report["accuracy"]:.4f}' in out


@needs_data
def test_predict_gives_the_classes_evaluate_gives(mlp_run, tfds_dir, tmp_path):
    workdir, _ = mlp_run
    code, _, err = run_main(evaluate_main, [str(workdir), '--out', str(tmp_path / 'eval')])
    assert code == 0, err
    report = json.loads(next((tmp_path / 'eval').glob('test-step*.json')).read_text())
    x, y = first_test_images(tfds_dir, 24)
    assert report['labels'][:24] == y.tolist()
    paths = []
    for i, image in enumerate(x):
        paths.append(tmp_path / f'test{i}.png')
        Image.fromarray(image[..., 0]).save(paths[-1])
    bad, missing = tmp_path / 'bad.png', tmp_path / 'missing.png'
    bad.write_bytes(b'not an image')
    argv = [
        str(workdir),
        str(paths[0]),
        str(bad),
        *map(str, paths[1:]),
        str(missing),
        '--top-k',
        '3',
        '--json',
    ]
    code, out, err = run_main(predict_main, argv)
    assert code == 1
    assert [line for line in err.splitlines() if str(bad) in line] == [
        f'jaxconv predict: cannot read the image {bad} (UnidentifiedImageError: cannot '
        f"identify image file '{bad}'); replace or delete it"
    ]
    assert len([line for line in err.splitlines() if str(missing) in line]) == 1
    result = json.loads(out)
    assert [p['image'] for p in result['predictions']] == list(map(str, paths))
    names = [p['top_k'][0]['class'] for p in result['predictions']]
    assert names == [SPEC.class_names[c] for c in report['predicted'][:24]]
    assert len(set(names)) > 1  # a model that learnt something
    for p in result['predictions']:
        probs = [t['probability'] for t in p['top_k']]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    code, text, _ = run_main(predict_main, [str(workdir), str(paths[0]), '--top-k', '2'])
    assert code == 0 and text.startswith(f'{paths[0]}: {names[0]} ')


def test_predict_converts_and_resizes_like_the_training_images(tmp_path):
    from jaxconv.predict import read_image

    Image.new('RGB', (56, 40), (200, 100, 50)).save(tmp_path / 'rgb.jpg')
    x = read_image(tmp_path / 'rgb.jpg', SPEC)
    assert x.shape == (28, 28, 1) and x.dtype == np.uint8
    grey = round(200 * 299 / 1000 + 100 * 587 / 1000 + 50 * 114 / 1000)  # PIL's 'L' (ITU-R 601)
    assert abs(int(x[14, 14, 0]) - grey) <= 1
    jnp.asarray(x)


# ------------------------------------------------------------------------------------------------
# The case: torchvision's ResNet-18 weights, 1-channel Fashion-MNIST, and back
# ------------------------------------------------------------------------------------------------
#: Flags the README test adds to the train.py command to keep it short (argparse keeps the last).
SHORT = [
    '--image-size',
    '32',
    '--epochs',
    '1',
    '--limit-train',
    '64',
    '--limit-eval',
    '32',
    '--batch-size',
    '32',
    '--no-progress',
]


def readme_blocks() -> tuple[list[list[str]], str]:
    """The README's "From PyTorch and back" section: its shell commands and its Python code."""
    text = (REPO / 'README.md').read_text()
    section = text[text.index('\n## From PyTorch and back') :]
    section = section[: section.index('\n## ', 1)]
    bash = section[section.index('```bash\n') + 8 :]
    bash = bash[: bash.index('```')]
    python = section[section.index('```python\n') + 10 :]
    python = python[: python.index('```')]
    commands = [
        shlex.split(line)
        for line in bash.splitlines()
        if line.strip() and not line.lstrip().startswith('#')
    ]
    assert commands and all(c[0] == '.venv/bin/python' for c in commands)
    return commands, python


@pytest.mark.slow
@needs_data
def test_readme_from_pytorch_and_back_as_written(tfds_dir, tmp_path):
    """The README section run as written, from a directory holding a random-init torchvision
    ``resnet18.pth`` (3 channels, 1000 classes, torch.save) and a test image ``boot.png``:
    tv_resnet18 fine-tuned on 1-channel, 10-class Fashion-MNIST reports both adaptations;
    evaluate reproduces the recorded accuracy; predict classifies the PNG as evaluate does; the
    export loads into torchvision's resnet18 with strict=True and gives jaxconv's logits. Then
    ``--trainable head`` from that run changes fc and nothing else, BatchNorm statistics
    included, bit for bit."""
    tv = import_torchvision()
    torch.manual_seed(0)
    torch.save(tv.models.resnet18().state_dict(), tmp_path / 'resnet18.pth')
    x, y = first_test_images(tfds_dir, 32)
    boot = int(np.flatnonzero(y == SPEC.class_names.index('Ankle boot'))[0])
    Image.fromarray(x[boot][..., 0]).save(tmp_path / 'boot.png')
    commands, python = readme_blocks()
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    env.pop('XLA_FLAGS', None)
    outputs = []
    for command in commands:
        argv = [sys.executable, *command[1:]]
        if command[1] == 'train.py':
            argv = [
                sys.executable,
                str(REPO / 'train.py'),
                *command[2:],
                *SHORT,
                '--data-dir',
                str(FASHION_MNIST),
                '--tfds-dir',
                tfds_dir,
            ]
        proc = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f'{command}\n{proc.stderr[-3000:]}'
        outputs.append(proc.stdout)
    train_out, evaluate_out, predict_out, _ = outputs
    assert [line for line in train_out.splitlines() if line.startswith('--init-from: ')] == [
        '--init-from: conv1.weight: first conv adapted to 1 input channel(s) (summed over 3)',
        '--init-from: fc.weight: head re-initialised for 10 classes (the weights have 1000)',
        '--init-from: fc.bias: head re-initialised for 10 classes (the weights have 1000)',
    ]
    workdir = tmp_path / 'runs' / 'tv-resnet18'
    summary = json.loads((workdir / 'summary.json').read_text())
    step = max(Checkpoints(workdir).all_steps())
    report = json.loads((workdir / 'evaluation' / f'test-step{step}.json').read_text())
    assert report['accuracy'] == summary['final_test_accuracy']
    assert predict_out.startswith(f'boot.png: {SPEC.class_names[report["predicted"][boot]]} ')

    namespace = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(python, namespace)  # torchvision is imported already (parity.tv's workaround)
    finally:
        os.chdir(cwd)
    model = namespace['model']
    assert_same_logits(workdir, model.state_dict(), tfds_dir, model)

    head = tmp_path / 'head'
    code, out, err = run_main(
        train_main,
        [
            *commands[0][2:],
            *SHORT,
            '--data-dir',
            str(FASHION_MNIST),
            '--tfds-dir',
            tfds_dir,
            '--workdir',
            str(head),
            '--init-from',
            str(workdir),
            '--trainable',
            'head',
        ],
    )
    assert code == 0, err[-3000:]
    before, after = flat_params(workdir), flat_params(head)
    changed = sorted(k for k in before if before[k].tobytes() != after[k].tobytes())
    assert changed == ['fc.bias', 'fc.kernel']
    assert any(k.endswith('.mean') for k in before)  # the BatchNorm statistics were compared


# ------------------------------------------------------------------------------------------------
# The jaxconv command
# ------------------------------------------------------------------------------------------------
def test_jaxconv_command_lists_and_runs_each_subcommand_help():
    import tomllib

    from jaxconv.commands import COMMANDS, main

    scripts = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['scripts']
    assert scripts == {'jaxconv': 'jaxconv.commands:main'}
    code, out, _ = run_main(main, ['--help'])
    assert code == 0 and all(name in out for name in COMMANDS)
    assert set(COMMANDS) == {'train', 'evaluate', 'predict', 'export', 'parity'}
    for name in COMMANDS:
        code, out, err = run_main(main, [name, '--help'])
        assert code == 0 and out.startswith('usage: '), (name, err)
    code, _, err = run_main(main, ['nosuch'])
    assert code == 2 and "unknown command 'nosuch'" in err
