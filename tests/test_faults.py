"""Fault injection: train.py killed, diverging, fed bad data, bad arguments or a used workdir, and
the library misused. A long run must survive a crash, and every mistake must end in one clear
message (no traceback from deep inside JAX) without overwriting earlier results.

Every train.py case runs as a user runs it: ``python train.py ...`` in a subprocess, from the
repository root, with ``JAX_PLATFORMS=cpu``. Runs are tiny (LeNet, 512 training images in
batches of 64, 3 epochs of 8 steps) on the real Fashion-MNIST files from ``shared/datasets``
(next to the repository), prepared once per session into a temporary tfds directory; no test
touches ``~/tensorflow_datasets`` (the subprocesses also get ``TFDS_DATA_DIR`` pointing at a
temporary directory) and every data case passes ``--data-dir``, so the Debian
``dataset-fashion-mnist`` package and the network are never consulted: train.py has no switch to
turn those lookups off, and without ``--data-dir`` a case would depend on the machine.

Faults with no hook in the training code are injected from outside the code under test:
``SIGKILL`` sent by the test (polling for orbax's temporary checkpoint directory) or a
``sitecustomize`` module put on the subprocess's ``PYTHONPATH`` (``tests/fault_hook/``) that makes
the process ``SIGKILL`` itself at an exact step or at the exact moment orbax commits a checkpoint,
or report a NaN loss at an exact step. train.py itself runs unmodified.


"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    DATASETS_DIR,
    FASHION_MNIST,
    MNIST,
    MNIST_FILES,
    REPO,
    SUMMARY_TIMING_KEYS,
    TINY_STEPS_PER_EPOCH,
    checkpoint_leaves,
    checkpoint_steps,
    kill_when,
    needs_data,
    read_jsonl,
    run_metrics,
    tiny_run,
)
from jaxconv.data import DATASETS
from jaxconv.optim import OPTIMIZERS
from jaxconv.registry import list_models

FASHION_FILES = MNIST_FILES
TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax writes checkpoint N into N.orbax-checkpoint-tmp
STEPS_PER_EPOCH = TINY_STEPS_PER_EPOCH
# Three epochs: a crash in epoch 2 has a complete checkpoint before it and one still to come.
EPOCHS = 3
LAST_STEP = EPOCHS * STEPS_PER_EPOCH
fault_run = functools.partial(tiny_run, epochs=EPOCHS)

# The sitecustomize module that a fault_env subprocess imports at start-up.
FAULT_HOOK_DIR = REPO / 'tests' / 'fault_hook'


# ------------------------------------------------------------------------------------------------
# Running train.py and looking at what it left
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='session')
def tfds_home(tmp_path_factory) -> Path:
    """$TFDS_DATA_DIR of every subprocess: a directory no test prepares into on purpose, so a code
    path that ignored --tfds-dir would still stay out of ~/tensorflow_datasets."""
    return tmp_path_factory.mktemp('tfds_home')


def base_env(tfds_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'TFDS_DATA_DIR')}
    return {**env, 'JAX_PLATFORMS': 'cpu', 'TFDS_DATA_DIR': str(tfds_home), **extra}


def train_command(args) -> list[str]:
    return [sys.executable, 'train.py', *map(str, args)]


def train(args, env, *, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_command(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def train_all(jobs: dict[str, tuple[list, dict]]) -> dict[str, subprocess.CompletedProcess]:
    """Run independent train.py invocations two at a time (most are ~2 s of start-up each)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = {case: pool.submit(train, args, env) for case, (args, env) in jobs.items()}
        return {case: future.result() for case, future in futures.items()}


def message_lines(stderr: str) -> list[str]:
    """stderr without argparse's usage block (``usage: ...`` and its indented continuation)."""
    lines = stderr.splitlines()
    if lines and lines[0].startswith('usage: '):
        lines = lines[1:]
        while lines and lines[0].startswith(' '):
            lines = lines[1:]
    return lines


def assert_clear_error(
    proc: subprocess.CompletedProcess, code: int, *needles: str, max_lines: int | None = 3
) -> str:
    """Exit ``code``, no traceback, exactly one ``train.py: ...`` message naming every needle,
    at most ``max_lines`` lines besides argparse's usage block. Returns the message."""
    err = proc.stderr
    assert proc.returncode == code, f'exit {proc.returncode}, expected {code}\n{err[-3000:]}'
    assert 'Traceback' not in err, err[-3000:]
    lines = message_lines(err)
    first = [i for i, line in enumerate(lines) if line.startswith('train.py: ')]
    assert len(first) == 1, err
    message = '\n'.join(lines[first[0] :])
    for needle in needles:
        assert needle in message, f'{needle!r} not in:\n{message}'
    if max_lines is not None:
        assert len(lines) <= max_lines, f'{len(lines)} lines:\n{err}'
    return message


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (and 'dir' for every directory) under ``root``."""
    out = {}
    for path in sorted(root.rglob('*')):
        rel = str(path.relative_to(root))
        out[rel] = 'dir' if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_same_run(workdir: Path, reference: Path) -> None:
    """Same metrics.jsonl (timings aside), same checkpoints, bit-identical final train state."""
    assert run_metrics(workdir) == run_metrics(reference)
    assert checkpoint_steps(workdir) == checkpoint_steps(reference)
    (step, leaves), (ref_step, ref_leaves) = (checkpoint_leaves(w) for w in (workdir, reference))
    assert step == ref_step == LAST_STEP
    for a, b in zip(leaves, ref_leaves, strict=True):
        np.testing.assert_array_equal(a, b)
    summary, ref_summary = (
        json.loads((w / 'summary.json').read_text()) for w in (workdir, reference)
    )
    drop = SUMMARY_TIMING_KEYS | {'config'}  # config holds --resume and --workdir
    assert {k: v for k, v in summary.items() if k not in drop} == {
        k: v for k, v in ref_summary.items() if k not in drop
    }
    assert not list((workdir / 'checkpoints').glob(f'*{TMP_SUFFIX}*')), 'debris left behind'


def no_prepared_dataset(tfds_dir: Path, name: str = 'fashion_mnist') -> bool:
    """Nothing under ``tfds_dir`` that a later run would take for a prepared dataset."""
    return not any((tfds_dir / name).glob('*/dataset_info.json'))


@pytest.fixture(scope='session')
def fault_env(tfds_home):
    """``fault_env(JAXCONV_FAULT_...='k')``: the environment that loads the fault hook
    (tests/fault_hook/sitecustomize.py)."""
    # sitecustomize is imported before the script's directory joins sys.path: add the repo too.
    path = os.pathsep.join(
        filter(None, [str(FAULT_HOOK_DIR), str(REPO), os.environ.get('PYTHONPATH')])
    )

    def make(**faults: str) -> dict[str, str]:
        return base_env(tfds_home, PYTHONPATH=path, **faults)

    return make


@pytest.fixture(scope='module')
def reference(prepared_tfds, tfds_home, tmp_path_factory) -> Path:
    """The uninterrupted run every crash test must reproduce (read only: copy it to modify)."""
    workdir = tmp_path_factory.mktemp('reference') / 'run'
    proc = train(fault_run(workdir, prepared_tfds), base_env(tfds_home))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert checkpoint_steps(workdir) == [8, 16, 24]
    return workdir


def copy_run(reference: Path, dest: Path) -> Path:
    shutil.copytree(reference, dest)
    return dest


# ------------------------------------------------------------------------------------------------
# 1. Crash and resume: SIGKILL anywhere, then --resume, gives the uninterrupted run
# ------------------------------------------------------------------------------------------------
@needs_data
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(
    reference, prepared_tfds, tfds_home, fault_env, tmp_path
):
    """Killed before step 12 (epoch 2, batch 5 of 8): nothing of epoch 2 survives but the run
    resumes from checkpoint 8 and ends bit-identical to the uninterrupted one."""
    workdir = tmp_path / 'run'
    killed = train(fault_run(workdir, prepared_tfds), fault_env(JAXCONV_FAULT_KILL_AT_STEP='12'))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert checkpoint_steps(workdir) == [8]
    assert [r['epoch'] for r in read_jsonl(workdir / 'metrics.jsonl')] == [0]
    assert not (workdir / 'summary.json').exists()

    resumed = train(fault_run(workdir, prepared_tfds, '--resume'), base_env(tfds_home))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming from checkpoint 8 (epoch 2, step 0 of 8)' in resumed.stdout
    assert_same_run(workdir, reference)


@needs_data
def test_sigkill_while_a_checkpoint_is_being_written(reference, prepared_tfds, tfds_home, tmp_path):
    """A real SIGKILL from outside the moment orbax's temporary directory of checkpoint 16
    appears: the half-written checkpoint is not listed, --resume starts from checkpoint 8 and
    the run ends as if never killed (orbax replaces the stale temporary directory)."""
    workdir = tmp_path / 'run'
    checkpoints = workdir / 'checkpoints'
    proc = subprocess.Popen(
        train_command(fault_run(workdir, prepared_tfds)),
        cwd=REPO,
        env=base_env(tfds_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def writing_16():
        return checkpoints.is_dir() and any(
            p.name.startswith(f'16{TMP_SUFFIX}') for p in checkpoints.iterdir()
        )

    status = kill_when(proc, writing_16, poll=0.0005)
    assert status == -signal.SIGKILL, 'the run ended before checkpoint 16 was written'
    half_written = [p.name for p in checkpoints.iterdir() if TMP_SUFFIX in p.name]
    assert half_written, 'killed too late: checkpoint 16 had already been renamed into place'
    assert checkpoint_steps(workdir) == [8]

    resumed = train(fault_run(workdir, prepared_tfds, '--resume'), base_env(tfds_home))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming from checkpoint 8 ' in resumed.stdout
    assert_same_run(workdir, reference)


@needs_data
def test_sigkill_at_the_commit_of_a_checkpoint(
    reference, prepared_tfds, tfds_home, fault_env, tmp_path
):
    """The worst moment: checkpoint 16 is completely written, orbax's commit_success.txt
    included, only the rename into place is missing. It must still not count as a checkpoint
    (and the metrics line of epoch 2, appended before checkpointing, must go on resume)."""
    workdir = tmp_path / 'run'
    killed = train(fault_run(workdir, prepared_tfds), fault_env(JAXCONV_FAULT_KILL_AT_COMMIT='16'))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    tmp = workdir / 'checkpoints' / f'16{TMP_SUFFIX}'
    assert (tmp / 'commit_success.txt').is_file() and (tmp / 'state').is_dir()
    assert checkpoint_steps(workdir) == [8]
    assert [r['epoch'] for r in read_jsonl(workdir / 'metrics.jsonl')] == [0, 1]

    resumed = train(fault_run(workdir, prepared_tfds, '--resume'), base_env(tfds_home))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming from checkpoint 8 ' in resumed.stdout
    assert_same_run(workdir, reference)


@needs_data
def test_killed_after_the_last_checkpoint_resume_writes_the_summary(
    reference, prepared_tfds, tfds_home, tmp_path
):
    """Killed between the last checkpoint and summary.json / curves.png (as left by SIGKILL
    there): --resume trains nothing and writes the run's summary and curves."""
    workdir = copy_run(reference, tmp_path / 'run')
    (workdir / 'summary.json').unlink()
    (workdir / 'curves.png').unlink()
    resumed = train(fault_run(workdir, prepared_tfds, '--resume'), base_env(tfds_home))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'resuming from checkpoint {LAST_STEP}' in resumed.stdout
    assert (workdir / 'curves.png').read_bytes()[:4] == b'\x89PNG'
    assert_same_run(workdir, reference)


@needs_data
def test_torn_metrics_line_from_a_crash_is_dropped_on_resume(
    reference, prepared_tfds, tfds_home, tmp_path
):
    """A machine crash (power loss) while epoch 2's line was appended: half a line, no
    checkpoint 16. --resume must continue from checkpoint 8 and end as the uninterrupted run."""
    workdir = copy_run(reference, tmp_path / 'run')
    for step in (16, 24):
        shutil.rmtree(workdir / 'checkpoints' / str(step))
    (workdir / 'summary.json').unlink()
    lines = (workdir / 'metrics.jsonl').read_text().splitlines(keepends=True)
    (workdir / 'metrics.jsonl').write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    resumed = train(fault_run(workdir, prepared_tfds, '--resume'), base_env(tfds_home))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'Traceback' not in resumed.stderr
    assert_same_run(workdir, reference)


def timed_stdout_lines(args, env) -> list[tuple[float, str]]:
    """Run train.py to the end; (seconds since start, line) for every line it prints."""
    start = time.monotonic()
    proc = subprocess.Popen(
        train_command(args),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = [(time.monotonic() - start, line) for line in proc.stdout]
    assert proc.wait() == 0
    return lines


def where_killed(workdir: Path, steps_per_epoch: int, last_step: int) -> str:
    """What a SIGKILL interrupted, read from what it left in the workdir."""
    steps = checkpoint_steps(workdir)
    last = steps[-1] if steps else None
    if any(TMP_SUFFIX in p.name for p in (workdir / 'checkpoints').iterdir()):
        return f'writing a checkpoint (last complete: {last})'
    epochs = [r['epoch'] for r in read_jsonl(workdir / 'metrics.jsonl')]
    if epochs and (last or 0) < (epochs[-1] + 1) * steps_per_epoch:
        return f'between the metrics line of epoch {epochs[-1] + 1} and its checkpoint'
    if last == last_step:
        return 'after the last checkpoint (summary, curves)'
    return f'training or evaluating (last checkpoint: {last})'


@pytest.mark.slow
@needs_data
def test_repeated_sigkill_at_random_moments_then_resume(prepared_tfds, tfds_home, tmp_path):
    """SIGKILL at seeded random moments, each time started again with --resume, until the run
    completes: it is the run that was never killed. Each attempt lets one epoch finish (so every
    attempt makes progress), then kills after a random fraction of an epoch's duration: in
    training, evaluation, the metrics append or a checkpoint write. 32 steps per epoch, 5 epochs."""
    epochs, spe = 5, 1024 // 32
    args = lambda workdir, *extra: tiny_run(  # noqa: E731
        workdir, prepared_tfds, *extra, limit_train=1024, batch_size=32, epochs=epochs
    )
    env = base_env(tfds_home)
    reference = tmp_path / 'reference'
    ends = [t for t, line in timed_stdout_lines(args(reference), env) if line.startswith('epoch ')]
    epoch_seconds = (ends[-1] - ends[0]) / (len(ends) - 1)

    workdir = tmp_path / 'run'
    rng = random.Random(0)
    kills = []
    for _ in range(2 * epochs):
        proc = subprocess.Popen(
            train_command(args(workdir, '--resume')),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        started = proc.stdout.readline()  # logged right before training starts or resumes
        assert 'starting from scratch' in started or 'resuming from checkpoint' in started, started
        proc.stdout.readline()  # an epoch finished
        time.sleep(rng.uniform(0.0, epoch_seconds))
        proc.kill()
        proc.communicate()
        if proc.returncode == 0:
            break
        kills.append(where_killed(workdir, spe, epochs * spe))
    print('SIGKILL landed:', *kills, sep='\n  ')
    assert len(kills) >= 2
    final = train(args(workdir, '--resume'), env)
    assert final.returncode == 0, final.stderr[-3000:]
    assert run_metrics(workdir) == run_metrics(reference)
    (step, leaves), (_, ref_leaves) = checkpoint_leaves(workdir), checkpoint_leaves(reference)
    assert step == epochs * spe
    for a, b in zip(leaves, ref_leaves, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not list((workdir / 'checkpoints').glob(f'*{TMP_SUFFIX}*'))


# ------------------------------------------------------------------------------------------------
# 2. Divergence
# ------------------------------------------------------------------------------------------------
@needs_data
def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    reference, prepared_tfds, fault_env, tmp_path
):
    """Loss NaN at step 11 (epoch 2, batch 4): exit 1 with one sentence naming the step;
    checkpoint 8 and epoch 1's metrics line stay exactly those of the healthy run."""
    workdir = tmp_path / 'run'
    proc = train(fault_run(workdir, prepared_tfds), fault_env(JAXCONV_FAULT_NAN_AT_STEP='11'))
    assert_clear_error(
        proc,
        1,
        'loss is nan at step 11 (epoch 2, batch 4 of 8)',
        'the last good checkpoint (step 8) and metrics are kept',
    )
    assert checkpoint_steps(workdir) == [8]
    assert run_metrics(workdir) == run_metrics(reference)[:1]
    (_, leaves), (_, ref_leaves) = checkpoint_leaves(workdir), checkpoint_leaves(reference, 8)
    for a, b in zip(leaves, ref_leaves, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not (workdir / 'summary.json').exists()


@needs_data
def test_overflowing_lr_stops_at_the_first_nonfinite_loss(prepared_tfds, tfds_home, tmp_path):
    """SGD at lr 1e38 overflows float32 after one step: stop there, write no checkpoint."""
    workdir = tmp_path / 'run'
    proc = train(
        fault_run(workdir, prepared_tfds, '--optimizer', 'sgd', '--lr', '1e38'), base_env(tfds_home)
    )
    message = assert_clear_error(proc, 1, 'no checkpoint was written yet', '--lr')
    assert re.search(r'loss is (nan|inf|-inf) at step \d+ \(epoch 1, batch \d+ of 8\)', message)
    assert checkpoint_steps(workdir) == []
    assert not (workdir / 'summary.json').exists()
    assert read_jsonl(workdir / 'metrics.jsonl') == []


@needs_data
def test_absurd_lr_1e30_stops_the_run(prepared_tfds, tfds_home, tmp_path):
    workdir = tmp_path / 'run'
    proc = train(fault_run(workdir, prepared_tfds, '--lr', '1e30'), base_env(tfds_home))
    message = assert_clear_error(proc, 1, '--lr')
    assert re.search(r'at step \d+', message)
    assert not (workdir / 'summary.json').exists()


# ------------------------------------------------------------------------------------------------
# 3. Bad data (each case prepares into its own fresh tfds directory)
# ------------------------------------------------------------------------------------------------
def _copy_fashion(dest: Path, *, without: str | None = None) -> Path:
    dest.mkdir(parents=True)
    for name in FASHION_FILES:
        if name != without:
            shutil.copy(FASHION_MNIST / name, dest / name)
    return dest


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _not_found(*where: str) -> tuple[str, ...]:
    """What a "not found" message must hold: the dataset, every expected file, where it looked,
    and the two ways to supply the data."""
    return ('Fashion-MNIST', 'was not found', *FASHION_FILES, *where, '--data-dir', 'download')


# case -> (make the --data-dir under a tmp dir, extra args, needles, max message lines)
BAD_DATA = {
    'data-dir-missing': (lambda d: d / 'nowhere', (), _not_found('does not exist'), None),
    'data-dir-empty': (
        lambda d: (d / 'empty').mkdir() or d / 'empty',
        (),
        _not_found('is empty'),
        None,
    ),
    'file-missing': (
        lambda d: _copy_fashion(d / 'x', without='t10k-labels-idx1-ubyte.gz'),
        (),
        _not_found('missing t10k-labels-idx1-ubyte.gz'),
        None,
    ),
    'data-dir-is-a-file': (
        lambda d: (d / 'f.gz').write_bytes(b'x') and d / 'f.gz',
        (),
        ('is not a directory', *FASHION_FILES),
        3,
    ),
    'truncated': (
        lambda d: _truncate(_copy_fashion(d / 'x') / 'train-labels-idx1-ubyte.gz') or d / 'x',
        (),
        ('checksum mismatch for train-labels-idx1-ubyte.gz', 'truncated'),
        3,
    ),
    'altered': (
        lambda d: _flip_a_byte(_copy_fashion(d / 'x') / 't10k-images-idx3-ubyte.gz') or d / 'x',
        (),
        ('checksum mismatch for t10k-images-idx3-ubyte.gz', 'altered'),
        3,
    ),
    'mnist-as-fashion': (
        lambda d: MNIST,
        (),
        ("of 'mnist', not of 'fashion_mnist'", 'wrong dataset'),
        3,
    ),
    'fashion-as-mnist': (
        lambda d: FASHION_MNIST,
        ('--dataset', 'mnist'),
        ("of 'fashion_mnist', not of 'mnist'", 'wrong dataset'),
        3,
    ),
}


@pytest.fixture(scope='module')
def bad_data_runs(tmp_path_factory, tfds_home):
    if not FASHION_MNIST.is_dir() or not MNIST.is_dir():
        pytest.skip(f'Fashion-MNIST or MNIST not found in {DATASETS_DIR}')
    jobs, dirs = {}, {}
    for case, (make, extra, _, _) in BAD_DATA.items():
        root = tmp_path_factory.mktemp(case)
        dirs[case] = (root / 'run', root / 'tfds')
        jobs[case] = (
            fault_run(root / 'run', root / 'tfds', *extra, data_dir=make(root)),
            base_env(tfds_home),
        )
    return {case: (proc, *dirs[case]) for case, proc in train_all(jobs).items()}


@pytest.mark.parametrize('case', list(BAD_DATA))
def test_bad_data_is_one_clear_error_and_prepares_nothing(bad_data_runs, case):
    """Exit 1, the message names the file or directory and what to do; no workdir written, no
    (partial) prepared dataset left for a later run to trust."""
    proc, workdir, tfds_dir = bad_data_runs[case]
    *_, needles, max_lines = BAD_DATA[case]
    message = assert_clear_error(proc, 1, *needles, max_lines=max_lines)
    assert message.startswith('train.py: data error: ')
    if max_lines is None:  # the "not found" message is a list by design: first line, a sentence
        assert message.splitlines()[0].endswith('was not found.'), message
    assert not workdir.exists()
    assert no_prepared_dataset(tfds_dir, 'fashion_mnist') and no_prepared_dataset(tfds_dir, 'mnist')


@needs_data
def test_tfds_dir_that_is_a_file_is_one_clear_error(tmp_path, tfds_home):
    not_a_dir = tmp_path / 'tfds'
    not_a_dir.write_text('a file')
    proc = train(fault_run(tmp_path / 'run', not_a_dir), base_env(tfds_home))
    assert_clear_error(proc, 1, str(not_a_dir), 'not a directory')
    assert not (tmp_path / 'run').exists()
    assert not_a_dir.read_text() == 'a file'


@pytest.mark.slow
@needs_data
def test_sigkill_while_preparing_leaves_nothing_a_later_run_trusts(reference, tfds_home, tmp_path):
    """SIGKILL one second into the preparation of the dataset (tfds writes into
    ``fashion_mnist/incomplete.*``): nothing counts as prepared, and the next run prepares the
    dataset again and trains exactly as the reference run did on the correctly prepared one."""
    tfds_dir, workdir = tmp_path / 'tfds', tmp_path / 'run'
    proc = subprocess.Popen(
        train_command(fault_run(workdir, tfds_dir)),
        cwd=REPO,
        env=base_env(tfds_home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    preparing = lambda: bool(list((tfds_dir / 'fashion_mnist').glob('incomplete.*')))  # noqa: E731
    status = kill_when(proc, preparing, timeout=120, delay=1.0)
    assert status == -signal.SIGKILL, 'the preparation ended before the kill'
    assert list((tfds_dir / 'fashion_mnist').glob('incomplete.*'))
    assert no_prepared_dataset(tfds_dir)
    assert not workdir.exists()

    again = train(fault_run(workdir, tfds_dir), base_env(tfds_home))
    assert again.returncode == 0, again.stderr[-3000:]
    assert run_metrics(workdir) == run_metrics(reference)


# ------------------------------------------------------------------------------------------------
# 4. Bad arguments: exit 2, one line, nothing written
# ------------------------------------------------------------------------------------------------
def _lenet_minimum_image_size() -> int:
    from flax import nnx

    from jaxconv.models.base import ImageSizeError
    from jaxconv.registry import create_model

    try:
        create_model('lenet', in_channels=1, image_size=4, rngs=nnx.Rngs(0))
    except ImageSizeError as e:
        return e.minimum
    raise AssertionError('lenet accepted 4x4 images')


# case -> (train.py arguments after the lenet defaults, extra environment, needles)
BAD_ARGS = {
    'unknown-arch': (['--arch', 'nonet'], {}, ["invalid choice: 'nonet'", *list_models()]),
    'unknown-dataset': (['--dataset', 'imagenet'], {}, ["invalid choice: 'imagenet'", *DATASETS]),
    'unknown-optimizer': (['--optimizer', 'lion'], {}, ["invalid choice: 'lion'", *OPTIMIZERS]),
    'missing-arch': (None, {}, ['the following arguments are required: --arch']),
    'image-size-too-small': (
        ['--image-size', '8'],
        {},
        ['lenet needs image_size >= {minimum}', 'got 8'],
    ),
    'batch-size-zero': (['--batch-size', '0'], {}, ['--batch-size must be a positive integer']),
    'batch-size-negative': (
        ['--batch-size', '-32'],
        {},
        ['--batch-size must be a positive integer', '-32'],
    ),
    'batch-size-not-a-number': (['--batch-size', 'abc'], {}, ["invalid int value: 'abc'"]),
    'batch-size-not-divisible': (
        ['--batch-size', '33'],
        {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'},
        ['--batch-size 33 is not divisible by the 2 devices', '32 or 34'],
    ),
    'epochs-negative': (['--epochs', '-1'], {}, ['--epochs must be a non-negative integer']),
    'lr-zero': (['--lr', '0'], {}, ['--lr must be a positive number']),
    'lr-negative': (['--lr', '-0.1'], {}, ['--lr must be a positive number']),
    'lr-nan': (['--lr', 'nan'], {}, ['--lr must be a positive number']),
    'no-full-batch': (['--limit-train', '10'], {}, ['no full batch of --batch-size 64']),
}


@pytest.fixture(scope='module')
def bad_arg_runs(tmp_path_factory, tfds_home):
    minimum = _lenet_minimum_image_size()
    jobs, dirs = {}, {}
    for case, (args, env, _) in BAD_ARGS.items():
        root = tmp_path_factory.mktemp(case)
        dirs[case] = (root / 'run', root / 'tfds')
        base = fault_run(root / 'run', root / 'tfds')
        argv = base[2:] if args is None else [*base, *args]
        jobs[case] = (argv, base_env(tfds_home, **env))
    return minimum, {case: (proc, *dirs[case]) for case, proc in train_all(jobs).items()}


@pytest.mark.parametrize('case', list(BAD_ARGS))
def test_bad_argument_is_one_line_exit_2_and_writes_nothing(bad_arg_runs, case):
    minimum, runs = bad_arg_runs
    proc, workdir, tfds_dir = runs[case]
    needles = [n.format(minimum=minimum) for n in BAD_ARGS[case][2]]
    message = assert_clear_error(proc, 2, *needles, max_lines=1)
    assert message.startswith('train.py: error: ')
    assert not workdir.exists() and not tfds_dir.exists()


# ------------------------------------------------------------------------------------------------
# 5. Workdir safety
# ------------------------------------------------------------------------------------------------
def _keep(workdir: Path, *names: str) -> None:
    for path in workdir.iterdir():
        if path.name not in names:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _crashed_after_epoch_1(workdir: Path) -> None:
    for step in (16, 24):
        shutil.rmtree(workdir / 'checkpoints' / str(step))
    for name in ('summary.json', 'curves.png'):
        (workdir / name).unlink()
    first = (workdir / 'metrics.jsonl').read_text().splitlines(keepends=True)[0]
    (workdir / 'metrics.jsonl').write_text(first)


# case -> how to turn a copy of the finished reference run into what the workdir holds
USED_WORKDIRS = {
    'finished-run': lambda w: None,
    'crashed-run': _crashed_after_epoch_1,
    'checkpoints-only': lambda w: _keep(w, 'checkpoints'),
    'config-only': lambda w: _keep(w, 'config.json'),
}


@pytest.fixture(scope='module')
def used_workdir_runs(reference, prepared_tfds, tfds_home, tmp_path_factory):
    jobs, before = {}, {}
    for case, damage in USED_WORKDIRS.items():
        workdir = copy_run(reference, tmp_path_factory.mktemp(case) / 'run')
        damage(workdir)
        before[case] = (workdir, tree_digest(workdir))
        jobs[case] = (fault_run(workdir, prepared_tfds), base_env(tfds_home))
    return {case: (proc, *before[case]) for case, proc in train_all(jobs).items()}


@needs_data
@pytest.mark.parametrize('case', list(USED_WORKDIRS))
def test_new_run_in_a_used_workdir_refuses_and_changes_nothing(used_workdir_runs, case):
    proc, workdir, before = used_workdir_runs[case]
    assert_clear_error(
        proc, 2, str(workdir), 'already holds a run', '--resume', '--overwrite', max_lines=1
    )
    assert tree_digest(workdir) == before


# case -> (arguments changed on --resume, differences the message must name)
CONFLICTS = {
    'arch': (['--arch', 'mlp'], ["arch: 'lenet' -> 'mlp'"]),
    'dataset': (['--dataset', 'mnist'], ["dataset: 'fashion_mnist' -> 'mnist'"]),
    'image-size': (['--image-size', '32'], ['image_size: 28 -> 32']),
    'all-three': (
        ['--arch', 'mlp', '--dataset', 'mnist', '--image-size', '32'],
        ["arch: 'lenet' -> 'mlp'", "dataset: 'fashion_mnist' -> 'mnist'", 'image_size: 28 -> 32'],
    ),
}


@pytest.fixture(scope='module')
def conflicting_resume_runs(reference, prepared_tfds, tfds_home, tmp_path_factory):
    jobs, before = {}, {}
    for case, (args, _) in CONFLICTS.items():
        workdir = copy_run(reference, tmp_path_factory.mktemp(case) / 'run')
        before[case] = (workdir, tree_digest(workdir))
        jobs[case] = (fault_run(workdir, prepared_tfds, '--resume', *args), base_env(tfds_home))
    return {case: (proc, *before[case]) for case, proc in train_all(jobs).items()}


@needs_data
@pytest.mark.parametrize('case', list(CONFLICTS))
def test_resume_with_another_config_names_the_differences(conflicting_resume_runs, case):
    proc, workdir, before = conflicting_resume_runs[case]
    assert_clear_error(proc, 2, 'cannot resume', *CONFLICTS[case][1], max_lines=1)
    assert tree_digest(workdir) == before


@needs_data
def test_resume_with_an_unreadable_config_json_refuses(
    reference, prepared_tfds, tfds_home, tmp_path
):
    workdir = copy_run(reference, tmp_path / 'run')
    text = (workdir / 'config.json').read_text()
    (workdir / 'config.json').write_text(text[: len(text) // 2])
    before = tree_digest(workdir)
    proc = train(fault_run(workdir, prepared_tfds, '--resume'), base_env(tfds_home))
    assert_clear_error(proc, 2, 'config.json', 'unreadable', '--overwrite', max_lines=1)
    assert tree_digest(workdir) == before


@needs_data
def test_resume_a_checkpoint_of_another_arch_without_config_json(
    reference, prepared_tfds, tfds_home, tmp_path
):
    workdir = copy_run(reference, tmp_path / 'run')
    (workdir / 'config.json').unlink()
    before = tree_digest(workdir)
    proc = train(fault_run(workdir, prepared_tfds, '--resume', arch='mlp'), base_env(tfds_home))
    assert_clear_error(proc, 2, 'cannot resume', "arch: 'lenet' -> 'mlp'")
    assert tree_digest(workdir) == before


@needs_data
def test_workdir_below_a_file_is_one_clear_error(prepared_tfds, tfds_home, tmp_path):
    blocker = tmp_path / 'notes.txt'
    blocker.write_text('not a directory')
    proc = train(fault_run(blocker / 'run', prepared_tfds), base_env(tfds_home))
    assert_clear_error(proc, 2, str(blocker), 'not a directory', max_lines=1)
    assert blocker.read_text() == 'not a directory'


# ------------------------------------------------------------------------------------------------
# 6. Library misuse
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    'arch, build, shape, expected',
    [
        ('lenet', dict(in_channels=1, image_size=28), (2, 28, 28, 3), '(N, 28, 28, 1)'),
        ('lenet', dict(in_channels=1, image_size=28), (2, 32, 32, 1), '(N, 28, 28, 1)'),
        ('lenet', dict(in_channels=1, image_size=28), (2, 1, 28, 28), '(N, 28, 28, 1)'),  # NCHW
        ('lenet', dict(in_channels=1, image_size=28), (28, 28, 1), '(N, 28, 28, 1)'),  # no batch
        ('resnet18', dict(in_channels=3, image_size=32), (2, 32, 32, 1), '(N, H, W, 3)'),
    ],
)
def test_model_called_with_a_wrong_shape_names_expected_and_actual(arch, build, shape, expected):
    """Eagerly and under jit: one ValueError with both shapes, not an XLA error."""
    import jax.numpy as jnp
    from flax import nnx

    from jaxconv.registry import create_model

    model = create_model(arch, rngs=nnx.Rngs(0), **build)
    x = jnp.zeros(shape)
    for call in (lambda m, x: m(x), nnx.jit(lambda m, x: m(x))):
        with pytest.raises(ValueError) as info:
            call(model, x)
        assert expected in str(info.value) and str(shape) in str(info.value)
        assert len(str(info.value).splitlines()) == 1


def _torch_and_flax(torch_spec: dict, flax_spec: dict):
    pytest.importorskip('torch')
    from flax import nnx

    from jaxconv.registry import create_model
    from parity.twins import torch_model

    return (
        torch_model(**torch_spec),
        create_model(flax_spec.pop('name'), rngs=nnx.Rngs(0), **flax_spec),
    )


@pytest.mark.parametrize(
    'flax_spec, needles',
    [
        (
            dict(name='mlp', num_classes=10, in_channels=1, image_size=28),
            ['net.0.weight (6, 1, 5, 5)', 'net.3.kernel (512, 10)'],
        ),
        (
            dict(name='lenet', num_classes=2, in_channels=1, image_size=28),
            ['net.11.kernel (84, 2)', '(10, 84)', 'net.11.bias (2,)'],
        ),
    ],
    ids=['lenet-vs-mlp', 'lenet-10-vs-2-classes'],
)
def test_transfer_between_mismatched_models_lists_keys_and_shapes(flax_spec, needles):
    """Both directions refuse with every mismatched key and shape, and write nothing."""
    import jax
    from flax import nnx

    from parity.transfer import TransferError, to_flax, to_torch

    torch_net, flax_net = _torch_and_flax(
        dict(name='lenet', num_classes=10, in_channels=1, image_size=28), dict(flax_spec)
    )
    flax_before = [np.array(x) for x in jax.tree.leaves(nnx.state(flax_net))]
    torch_before = {k: v.clone() for k, v in torch_net.state_dict().items()}
    for transfer, args in ((to_flax, (torch_net, flax_net)), (to_torch, (flax_net, torch_net))):
        with pytest.raises(TransferError) as info:
            transfer(*args)
        message = str(info.value)
        for needle in needles:
            assert needle in message, f'{transfer.__name__}: {needle!r} not in\n{message}'
    for a, b in zip(jax.tree.leaves(nnx.state(flax_net)), flax_before, strict=True):
        np.testing.assert_array_equal(np.array(a), b)
    for k, v in torch_net.state_dict().items():
        assert v.equal(torch_before[k]), k


@needs_data
def test_restoring_another_archs_checkpoint_is_a_clear_error(reference):
    from jaxconv.optim import make_optimizer
    from jaxconv.registry import create_model
    from jaxconv.training import steps
    from jaxconv.training.checkpoints import Checkpoints

    model = create_model(
        'mlp', num_classes=10, in_channels=1, image_size=28, rngs=steps.model_rngs(0)
    )
    like = steps.init_state(steps.split_model(model), make_optimizer('adam', 1e-3))
    ckpts = Checkpoints(reference)
    try:
        with pytest.raises(ValueError) as info:
            ckpts.restore(LAST_STEP, like=like)
    finally:
        ckpts.close()
    message = str(info.value)
    assert f'checkpoint {LAST_STEP}' in message and str(reference) in message, message[:2000]
    assert 'lenet' in message
    assert len(message.splitlines()) <= 10, message[:2000]
