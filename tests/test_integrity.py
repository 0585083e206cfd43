"""What a run reads back is what it wrote: damaged checkpoints are detected (``--resume`` falls
back to the newest intact one), and one workdir takes one training process at a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_finetune import mlp_args, run_main

from conftest import REPO, needs_data
from jaxconv.evaluate import main as evaluate_main
from jaxconv.training.checkpoints import Checkpoints
from jaxconv.training.cli import main as train_main
from jaxconv.training.lock import LOCK_FILE


def largest_file(step_dir: Path) -> Path:
    return max((p for p in step_dir.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def two_checkpoints(tfds_dir, tmp_path):
    """A finished 2-epoch MLP run: checkpoints 16 and 32."""
    workdir = tmp_path / 'run'
    code, _, err = run_main(train_main, mlp_args(tfds_dir, workdir))
    assert code == 0, err[-3000:]
    assert sorted(Checkpoints(workdir).all_steps()) == [16, 32]
    return workdir


@needs_data
def test_resume_falls_back_past_a_bit_flipped_checkpoint(two_checkpoints, tfds_dir):
    workdir = two_checkpoints
    damaged = largest_file(workdir / 'checkpoints' / '32')
    flip_a_bit(damaged)
    code, _, err = run_main(evaluate_main, [str(workdir)])
    assert code == 1 and 'checkpoint 32' in err and 'is damaged' in err and 'intact: 16' in err
    code, out, err = run_main(train_main, mlp_args(tfds_dir, workdir, '--resume'))
    assert code == 0, err[-3000:]
    rel = damaged.relative_to(workdir / 'checkpoints' / '32')
    assert (
        f'checkpoint 32 is damaged ({rel} changed (sha256 differs)): moved aside to '
        f'damaged-32; resuming from checkpoint 16 instead'
    ) in out
    assert 'resuming from checkpoint 16 ' in out
    assert sorted(Checkpoints(workdir).all_steps()) == [16, 32]
    assert (workdir / 'checkpoints' / 'damaged-32').is_dir()
    assert [
        json.loads(line)['epoch'] for line in (workdir / 'metrics.jsonl').read_text().splitlines()
    ] == [0, 1]
    code, _, err = run_main(evaluate_main, [str(workdir)])
    assert code == 0, err


@needs_data
def test_with_no_intact_checkpoint_resume_is_one_clear_error(two_checkpoints, tfds_dir):
    workdir = two_checkpoints
    truncate(largest_file(workdir / 'checkpoints' / '32'))
    flip_a_bit(largest_file(workdir / 'checkpoints' / '16'))
    code, _, err = run_main(train_main, mlp_args(tfds_dir, workdir, '--resume'))
    assert code == 2 and 'Traceback' not in err
    message = [line for line in err.splitlines() if line.startswith('train.py: error: ')]
    assert len(message) == 1, err
    assert 'no intact checkpoint' in message[0] and 'checkpoint 32: ' in message[0]
    assert 'bytes' in message[0] and 'checkpoint 16: ' in message[0]
    assert sorted(Checkpoints(workdir).all_steps()) == [16, 32]  # nothing moved


@needs_data
def test_a_second_run_on_a_workdir_refuses_naming_the_first_and_a_crash_frees_it(
    tfds_dir, tmp_path
):
    workdir = tmp_path / 'run'
    env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
    first = subprocess.Popen(
        [sys.executable, str(REPO / 'train.py'), *mlp_args(tfds_dir, workdir, '--epochs', '500')],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (workdir / LOCK_FILE).is_file() or (
            workdir / LOCK_FILE
        ).read_text().strip() != str(first.pid):
            assert first.poll() is None, first.stderr.read()[-3000:]
            assert time.monotonic() < deadline, 'the first run never took the lock'
            time.sleep(0.2)
        for extra in (['--resume'], ['--overwrite'], []):
            started = time.monotonic()
            code, _, err = run_main(train_main, mlp_args(tfds_dir, workdir, *extra))
            assert code == 2, err[-3000:]
            assert f'is in use by another training run (pid {first.pid}' in err
            assert time.monotonic() - started < 30
            assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    code, _, err = run_main(train_main, mlp_args(tfds_dir, workdir, '--overwrite', '--epochs', '1'))
    assert code == 0, err[-3000:]
    assert (workdir / LOCK_FILE).read_text().strip() == str(os.getpid())
