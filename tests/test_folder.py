"""--dataset folder (jaxconv.data.folder): an ImageFolder tree of the user's own images.

Trees are generated per test: 3 classes, images of mixed sizes and modes (PNG and JPEG, L and
RGB). Errors (a corrupt image, an empty class, a test class missing from train) go through
train.py's ``main`` as a user meets them. The README's "Your own images" command runs as
written (on a generated tree, with flags that shorten it) and its run serves the checks of
config.json, resume and ``--devices 2``. The slow test trains LeNet on 3 MNIST classes written
out as PNGs.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, dataset_dir
from jaxconv.data import DataError, load_folder
from jaxconv.data import folder as folder_module
from jaxconv.training.checkpoints import Checkpoints
from jaxconv.training.cli import main, run

#: class -> [(file name, PIL mode, (width, height))]; 'Dog' sorts before 'bird' (Python order).
TREE = {
    'cat': [(f'c{i}.png', 'RGB', (20 + i, 18)) for i in range(6)] + [('c9.jpg', 'L', (30, 30))],
    'Dog': [(f'd{i}.jpg', 'RGB', (16, 24 + i)) for i in range(6)] + [('d9.png', 'L', (28, 28))],
    'bird': [(f'b{i}.png', 'L', (28, 28)) for i in range(3)]
    + [(f'sub/b{i}.jpeg', 'RGB', (40, 32)) for i in range(3, 7)],
}
CLASSES = ['Dog', 'bird', 'cat']


def write_image(path: Path, mode: str, size: tuple[int, int], value: int) -> None:
    """A flat image of one grey level per class (+ noise), so a class is learnable."""
    rng = np.random.default_rng(value)
    w, h = size
    shape = (h, w) if mode == 'L' else (h, w, 3)
    pixels = np.clip(value + rng.integers(-20, 21, shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path)


def make_tree(root: Path, *, test: bool = True, copies: int = 1) -> Path:
    """TREE under root/train (each image ``copies`` times) and, if ``test``, under root/test."""
    for split in ('train', 'test') if test else ('train',):
        for c, (name, files) in enumerate(TREE.items()):
            for k in range(copies if split == 'train' else 1):
                for fname, mode, size in files:
                    stem = Path(fname)
                    target = root / split / name / stem.with_name(f'{k}_{stem.name}')
                    write_image(target, mode, size, 40 + 80 * c)
    return root


def base_args(data_dir, tmp_path, *extra) -> list[str]:
    return [
        '--arch',
        'lenet',
        '--dataset',
        'folder',
        '--data-dir',
        str(data_dir),
        '--tfds-dir',
        str(tmp_path / 'tfds'),
        '--workdir',
        str(tmp_path / 'run'),
        '--batch-size',
        '8',
        '--epochs',
        '1',
        '--no-progress',
        *extra,
    ]


# ------------------------------------------------------------------------------------------------
# Reading a tree
# ------------------------------------------------------------------------------------------------
def test_classes_and_files_in_torchvision_order(tmp_path):
    root = make_tree(tmp_path / 'images')
    for junk in ('.ipynb_checkpoints/x.png', 'cat/.ipynb_checkpoints/c.png', 'cat/.hidden.png'):
        write_image(root / 'train' / junk, 'L', (8, 8), 1)
    (root / 'train' / 'cat' / 'notes.txt').write_text('not an image')
    classes, train, test = folder_module.scan(root)
    assert classes == CLASSES == sorted(TREE)
    for name in classes:  # os.walk in sorted order: the nested sub/ comes after the files
        expected = sorted(
            root / 'train' / name / Path(f).with_name(f'0_{Path(f).name}')
            for f, _, _ in TREE[name]
            if '/' not in f
        )
        expected += sorted(
            root / 'train' / name / Path(f).with_name(f'0_{Path(f).name}')
            for f, _, _ in TREE[name]
            if '/' in f
        )
        assert train[name] == expected
    assert set(test) == set(CLASSES)


def test_mixed_sizes_and_modes_become_one_array(tmp_path):
    root = make_tree(tmp_path / 'images')
    data = load_folder(root, image_size=12)
    n_rgb = sum(mode == 'RGB' for files in TREE.values() for _, mode, _ in files)
    assert n_rgb * 2 > sum(map(len, TREE.values()))  # most are RGB: 3 channels by default
    n = sum(map(len, TREE.values()))
    assert data.train_x.shape == data.test_x.shape == (n, 12, 12, 3)
    assert data.train_x.dtype == np.uint8 and data.train_y.dtype == np.int32
    assert data.spec.class_names == tuple(CLASSES) and data.spec.num_classes == 3
    assert data.spec.image_shape == (12, 12, 3)
    assert data.train_y.tolist() == [CLASSES.index(c) for c in CLASSES for _ in TREE[c]]
    # Every image is PIL's convert + bilinear resize of its file.
    files = [p for c in CLASSES for p in folder_module.scan(root)[1][c]]
    for i in (0, len(files) - 1):
        with Image.open(files[i]) as image:
            want = np.asarray(image.convert('RGB').resize((12, 12), Image.BILINEAR))
        np.testing.assert_array_equal(data.train_x[i], want)
    # Mean and std: per channel over the training split, on the [0, 1] scale.
    x = data.train_x.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(data.spec.mean, x.mean(0), atol=1e-6)
    np.testing.assert_allclose(data.spec.std, x.std(0), atol=1e-6)

    grey = load_folder(root, image_size=12, channels=1)
    assert grey.train_x.shape == (n, 12, 12, 1) and len(grey.spec.mean) == 1


def test_without_test_folder_a_seeded_validation_split(tmp_path):
    root = make_tree(tmp_path / 'images', test=False, copies=3)
    a = load_folder(root, image_size=8, val_fraction=0.25, seed=0)
    b = load_folder(root, image_size=8, val_fraction=0.25, seed=0)
    c = load_folder(root, image_size=8, val_fraction=0.25, seed=1)
    n = 3 * sum(map(len, TREE.values()))
    assert len(a.test_x) == round(n * 0.25) and len(a.train_x) + len(a.test_x) == n
    np.testing.assert_array_equal(a.test_x, b.test_x)
    np.testing.assert_array_equal(a.train_y, b.train_y)
    assert not np.array_equal(a.test_x, c.test_x)
    everything = load_folder(root, image_size=8, val_fraction=0.25, seed=0)
    assert sorted(map(bytes, np.concatenate([a.train_x, a.test_x]))) == sorted(
        map(bytes, np.concatenate([everything.train_x, everything.test_x]))
    )
    # Mean/std from the training part only.
    np.testing.assert_allclose(a.spec.mean, (a.train_x.reshape(-1, 3) / 255.0).mean(0), atol=1e-6)


def test_decoded_cache_is_reused_and_a_changed_file_invalidates_it(tmp_path, monkeypatch):
    root = make_tree(tmp_path / 'images')
    cache = tmp_path / 'cache'
    first = load_folder(root, image_size=10, cache_dir=cache)
    real_decode = folder_module.decode
    calls = []
    monkeypatch.setattr(
        folder_module, 'decode', lambda *a, **k: calls.append(1) or real_decode(*a, **k)
    )
    again = load_folder(root, image_size=10, cache_dir=cache)
    assert calls == []
    np.testing.assert_array_equal(first.train_x, again.train_x)

    changed = folder_module.scan(root)[1]['cat'][0]
    write_image(changed, 'RGB', (20, 18), 250)
    os.utime(changed, ns=(1, 1))  # a new mtime even on a coarse file system clock
    updated = load_folder(root, image_size=10, cache_dir=cache)
    assert calls == [1]
    index = sum(len(TREE[c]) for c in CLASSES[: CLASSES.index('cat')])  # cat's first image
    assert not np.array_equal(updated.train_x[index], first.train_x[index])
    load_folder(root, image_size=10, cache_dir=cache)
    assert calls == [1]  # the new decoding was cached


# ------------------------------------------------------------------------------------------------
# Errors: one line, exit 1, nothing written
# ------------------------------------------------------------------------------------------------
def _corrupt(root: Path) -> str:
    bad = root / 'train' / 'bird' / 'broken.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'not really a png' * 4)
    return str(bad)


def _empty_class(root: Path) -> str:
    (root / 'train' / 'fish').mkdir()
    (root / 'train' / 'fish' / 'notes.txt').write_text('no images here')
    return str(root / 'train' / 'fish')


def _test_class_not_in_train(root: Path) -> str:
    write_image(root / 'test' / 'horse' / 'h.png', 'RGB', (10, 10), 7)
    return 'horse'


@pytest.mark.parametrize(
    'damage, needle',
    [
        (_corrupt, 'cannot read the image'),
        (_empty_class, 'holds no image'),
        (_test_class_not_in_train, 'lacks'),
    ],
)
def test_bad_tree_is_one_clear_error_and_writes_nothing(tmp_path, capsys, damage, needle):
    root = make_tree(tmp_path / 'images')
    named = damage(root)
    assert main(base_args(root, tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith('train.py: data error: ') and len(err.strip().splitlines()) == 1, err
    assert named in err and needle in err and 'Traceback' not in err
    assert not (tmp_path / 'run').exists() and not (tmp_path / 'tfds').exists()
    with pytest.raises(DataError, match=needle):
        load_folder(root, image_size=8)


@pytest.mark.parametrize(
    'args, message',
    [
        (['--dataset', 'folder'], '--dataset folder needs --data-dir'),
        (['--dataset', 'folder', '--data-dir', '.', '--val-fraction', '1.5'], '--val-fraction'),
        (['--channels', '2'], 'invalid choice: 2'),
        (['--augment', 'rotate'], "invalid choice: 'rotate'"),
    ],
)
def test_bad_folder_arguments_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(['--arch', 'lenet', '--workdir', str(tmp_path / 'run'), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / 'run').exists()


def test_missing_train_folder_names_the_layout(tmp_path, capsys):
    (tmp_path / 'photos').mkdir()
    assert main(base_args(tmp_path / 'photos', tmp_path)) == 1
    err = capsys.readouterr().err
    assert 'has no train/ folder' in err and 'train/CLASS' in err


# ------------------------------------------------------------------------------------------------
# Training on a tree: spec into the model, mean/std into config.json, resume, devices
# ------------------------------------------------------------------------------------------------
#: Flags the README test adds to the section's command to keep it short (argparse keeps the last).
SHORT = [
    '--epochs',
    '2',
    '--batch-size',
    '8',
    '--limit-train',
    '32',
    '--limit-eval',
    '16',
    '--no-progress',
]


def readme_commands() -> list[list[str]]:
    """The train.py commands of the README's "Your own images" section, as written."""
    text = (REPO / 'README.md').read_text()
    section = text[text.index('\n## Your own images') :]
    section = section[: section.index('\n## ', 1)]
    block = section[section.index('```bash\n') + 8 :]
    block = block[: block.index('```')]
    commands = [
        shlex.split(line)
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith('#')
    ]
    assert commands and all(c[:2] == ['.venv/bin/python', 'train.py'] for c in commands)
    return commands


@pytest.fixture(scope='module')
def readme_run(tmp_path_factory):
    """The README section's command run as written (``train.py`` in a fresh interpreter, from a
    directory holding a generated ``my_images``), plus :data:`SHORT`."""
    cwd = tmp_path_factory.mktemp('readme')
    root = make_tree(cwd / 'my_images', copies=2)
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TFDS_DATA_DIR': str(cwd / 'tfds')}
    env.pop('XLA_FLAGS', None)
    (command,) = readme_commands()
    argv = [sys.executable, str(REPO / 'train.py'), *command[2:], *SHORT]
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    workdir = cwd / command[command.index('--workdir') + 1]
    return cwd, root, workdir, command


def test_readme_example_trains_and_records_its_dataset_in_config_json(readme_run):
    cwd, root, workdir, command = readme_run
    records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in records] == [0, 1]
    recorded = json.loads((workdir / 'config.json').read_text())
    dataset = recorded['dataset']
    assert dataset['class_names'] == CLASSES and dataset['num_classes'] == 3
    image_size = recorded['config']['image_size']
    assert dataset['image_shape'] == [image_size, image_size, 3]
    expected = load_folder(root, image_size=image_size).spec
    assert dataset['mean'] == list(expected.mean) and dataset['std'] == list(expected.std)
    assert recorded['run']['augment'] == command[command.index('--augment') + 1]
    ckpts = Checkpoints(workdir)
    state, _ = ckpts.restore(ckpts.latest_step())
    ckpts.close()
    kernels = [np.asarray(v) for v in jax.tree.leaves(state['params'])]
    assert any(k.ndim == 4 and k.shape[-2] == 3 for k in kernels)  # a conv fed 3 channels
    assert any(k.ndim == 1 and k.shape == (3,) for k in kernels)  # 3 classes out


def test_resume_of_a_folder_run_refuses_another_augmentation(readme_run, capsys):
    cwd, root, workdir, command = readme_run
    before = (workdir / 'metrics.jsonl').read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                *command[2:],
                *SHORT,
                '--data-dir',
                str(root),
                '--workdir',
                str(workdir),
                '--tfds-dir',
                str(cwd / 'tfds'),
                '--augment',
                'none',
                '--resume',
            ]
        )
    assert exit_info.value.code == 2
    assert "augment: 'flip' -> 'none'" in capsys.readouterr().err
    assert (workdir / 'metrics.jsonl').read_text() == before


def test_evaluate_and_predict_a_folder_run(readme_run, tmp_path):
    """jaxconv.evaluate reads the tree as training did and reproduces the run's last test
    accuracy; jaxconv.predict names the folder's classes."""
    from jaxconv.evaluate import evaluate_run
    from jaxconv.predict import predict
    from jaxconv.runs import load_run

    cwd, root, workdir, command = readme_run
    loaded = load_run(workdir)
    report = evaluate_run(loaded, data_dir=root, tfds_dir=cwd / 'tfds')
    last = json.loads((workdir / 'metrics.jsonl').read_text().splitlines()[-1])
    assert report['class_names'] == CLASSES and report['examples'] == 16
    assert report['accuracy'] == last['test_accuracy']
    image = folder_module.scan(root)[2]['cat'][0]
    results, errors = predict(loaded, [str(image)], top_k=3)
    assert not errors and {name for name, _ in results[str(image)]} == set(CLASSES)


def test_resume_of_the_finished_folder_run_is_accepted(readme_run, tmp_path):
    """Same images, same settings: --resume finds its data unchanged and has nothing to do."""
    import shutil

    cwd, root, workdir, command = readme_run
    run_dir = shutil.copytree(workdir, tmp_path / 'run')
    result = run(
        [
            *command[2:],
            *SHORT,
            '--data-dir',
            str(root),
            '--workdir',
            str(run_dir),
            '--tfds-dir',
            str(cwd / 'tfds'),
            '--resume',
        ]
    )
    assert result.status == 'completed' and result.step_losses == []
    assert (run_dir / 'metrics.jsonl').read_text() == (workdir / 'metrics.jsonl').read_text()


def test_resume_after_the_images_changed_refuses(readme_run, tmp_path, capsys):
    """One image added since the run started: --resume names what changed and writes nothing."""
    import shutil

    cwd, root, workdir, command = readme_run
    images, run_dir = tmp_path / 'my_images', tmp_path / 'run'
    shutil.copytree(root, images)
    shutil.copytree(workdir, run_dir)
    write_image(images / 'train' / 'cat' / 'new.png', 'RGB', (20, 20), 200)
    before = (run_dir / 'metrics.jsonl').read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                *command[2:],
                *SHORT,
                '--data-dir',
                str(images),
                '--workdir',
                str(run_dir),
                '--tfds-dir',
                str(tmp_path / 'tfds'),
                '--resume',
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    n = json.loads((workdir / 'config.json').read_text())['dataset']['num_train']
    assert 'its data changed since it started' in err and f'num_train: {n} -> {n + 1}' in err
    assert (run_dir / 'metrics.jsonl').read_text() == before


def test_two_devices_train_a_folder_like_one(readme_run, tmp_path):
    """--devices 2 (fake CPU devices, a fresh interpreter), same run otherwise: the same
    losses and parameters, so the flips (and the data) do not depend on the batch's split."""
    cwd, root, workdir, command = readme_run
    env = {
        **os.environ,
        'JAX_PLATFORMS': 'cpu',
        'TFDS_DATA_DIR': str(cwd / 'tfds'),
        'XLA_FLAGS': '--xla_force_host_platform_device_count=2',
    }
    other = tmp_path / 'two'
    argv = [
        sys.executable,
        str(REPO / 'train.py'),
        *command[2:],
        *SHORT,
        '--data-dir',
        str(root),
        '--workdir',
        str(other),
        '--devices',
        '2',
    ]
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((w / 'summary.json').read_text()) for w in (workdir, other))
    assert two['devices'] == 2 and one['devices'] == 1
    for key in ('final_train_loss', 'final_test_loss'):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5)
    assert two['final_test_accuracy'] == one['final_test_accuracy']


# ------------------------------------------------------------------------------------------------
# Slow: real digits as a folder of PNGs
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lenet_on_three_mnist_classes_as_png_folders(tmp_path):
    """MNIST digits 0, 1 and 2 written out as PNGs (the official train/test split) into an
    ImageFolder tree; one short LeNet run must reach >= 0.95 test accuracy."""

    from jaxconv.data.builders import read_idx

    mnist = dataset_dir('mnist')
    root = tmp_path / 'digits'
    names = {0: 'zero', 1: 'one', 2: 'two'}
    for split, prefix, per_class in (('train', 'train', 2000), ('test', 't10k', 300)):
        images = read_idx(mnist / f'{prefix}-images-idx3-ubyte.gz')
        labels = read_idx(mnist / f'{prefix}-labels-idx1-ubyte.gz')
        for digit, name in names.items():
            (root / split / name).mkdir(parents=True)
            for k, i in enumerate(np.flatnonzero(labels == digit)[:per_class]):
                Image.fromarray(images[i]).save(root / split / name / f'{k}.png')
    result = run(
        [
            '--arch',
            'lenet',
            '--dataset',
            'folder',
            '--data-dir',
            str(root),
            '--tfds-dir',
            str(tmp_path / 'tfds'),
            '--workdir',
            str(tmp_path / 'run'),
            '--epochs',
            '4',
            '--batch-size',
            '32',
            '--no-progress',
        ]
    )
    assert result.summary['config']['dataset'] == 'folder'
    recorded = json.loads((tmp_path / 'run' / 'config.json').read_text())['dataset']
    assert recorded['class_names'] == ['one', 'two', 'zero'] and recorded['image_shape'][-1] == 1
    assert result.summary['final_test_accuracy'] >= 0.95, result.records
