"""What the test modules share: the environment, paths, the real data, one tiny training run,
reading a run's JSONL, checkpoints, and killing a subprocess at a chosen moment.

Plain helpers are imported (``from conftest import REPO, tiny_run``); fixtures need no import.
"""

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# Tests run on CPU; keep XLA from grabbing every core's worth of threads twice over.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# Autotuned conv plans go to a cache of this test session, never to the user's cache.
if 'JAXCONV_CACHE_DIR' not in os.environ:
    os.environ['JAXCONV_CACHE_DIR'] = tempfile.mkdtemp(prefix='jaxconv-test-cache-')

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------------
# The real dataset files
# ------------------------------------------------------------------------------------------------
#: The environment variable that points the tests at the real dataset files: a directory with
#: ``fashion-mnist/`` and ``mnist/`` sub-folders (the official .gz files). Unset, the development
#: setup's ``shared/datasets`` next to the repository. Tests that need files found in neither
#: place skip, naming the directory.
DATASETS_ENV = 'JAXCONV_TEST_DATASETS'
DATASETS_DIR = Path(os.environ.get(DATASETS_ENV) or REPO.parent / 'shared' / 'datasets')
FASHION_MNIST = DATASETS_DIR / 'fashion-mnist'
MNIST = DATASETS_DIR / 'mnist'
#: The official file names, the same for Fashion-MNIST and MNIST.
MNIST_FILES = (
    'train-images-idx3-ubyte.gz',
    'train-labels-idx1-ubyte.gz',
    't10k-images-idx3-ubyte.gz',
    't10k-labels-idx1-ubyte.gz',
)

needs_data = pytest.mark.skipif(
    not FASHION_MNIST.is_dir(), reason=f'Fashion-MNIST not found at {FASHION_MNIST}'
)


def dataset_dir(sub: str) -> Path:
    """``DATASETS_DIR / sub`` if it holds the four official files; else the test skips."""
    d = DATASETS_DIR / sub
    if not all((d / f).is_file() for f in MNIST_FILES):
        pytest.skip(
            f'real data not found: {d} should hold the official {sub} .gz files '
            f'(set ${DATASETS_ENV} to the directory holding {sub}/)'
        )
    return d


def _session_tfds(tmp_path_factory) -> Path:
    # One fixed name under the session's temporary root: every module prepares into it once.
    path = tmp_path_factory.getbasetemp() / 'tfds'
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory) -> str:
    """Where train runs prepare the datasets: $TFDS_DATA_DIR, else the session's tfds dir."""
    return os.environ.get('TFDS_DATA_DIR') or str(_session_tfds(tmp_path_factory))


@pytest.fixture(scope='session')
def prepared_tfds(tmp_path_factory) -> Path:
    """The session's tfds dir with Fashion-MNIST prepared in it (about 12 s, once), from the
    official files only: no download, no OS package."""
    if not FASHION_MNIST.is_dir():
        pytest.skip(f'Fashion-MNIST not found at {FASHION_MNIST}')
    from jaxconv.data import load_split

    path = _session_tfds(tmp_path_factory)
    for split in ('train', 'test'):
        load_split(
            'fashion_mnist',
            split,
            data_dir=FASHION_MNIST,
            tfds_dir=path,
            download=False,
            use_os_package=False,
        )
    return path


# ------------------------------------------------------------------------------------------------
# A tiny training run and what it leaves
# ------------------------------------------------------------------------------------------------
TINY_STEPS_PER_EPOCH = 512 // 64


def tiny_run(
    workdir,
    tfds_dir,
    *extra,
    arch: str = 'lenet',
    data_dir=FASHION_MNIST,
    limit_train: int = 512,
    limit_eval: int = 256,
    batch_size: int = 64,
    epochs: int = 2,
) -> list[str]:
    """train.py's arguments for a run of a few seconds: by default 512 Fashion-MNIST training
    images in batches of 64 (:data:`TINY_STEPS_PER_EPOCH` steps an epoch), 2 epochs, no
    progress bar. ``--arch`` comes first, so ``[2:]`` drops it."""
    args = [
        '--arch',
        arch,
        '--data-dir',
        data_dir,
        '--tfds-dir',
        tfds_dir,
        '--workdir',
        workdir,
        '--limit-train',
        limit_train,
        '--limit-eval',
        limit_eval,
        '--batch-size',
        batch_size,
        '--epochs',
        epochs,
        '--no-progress',
        *extra,
    ]
    return [str(a) for a in args]


#: Keys of a metrics.jsonl record that measure time, not the run (two equal runs differ there).
METRICS_TIMING_KEYS = frozenset(
    {'images_per_sec', 'train_seconds', 'epoch_seconds', 'elapsed_seconds'}
)
#: The same for summary.json.
SUMMARY_TIMING_KEYS = frozenset({'images_per_sec', 'wall_seconds'})


def read_jsonl(path) -> list[dict]:
    import json

    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def without_timing(records: list[dict]) -> list[dict]:
    """Metrics records without :data:`METRICS_TIMING_KEYS`, for comparing two runs."""
    return [{k: v for k, v in r.items() if k not in METRICS_TIMING_KEYS} for r in records]


def run_metrics(workdir: Path) -> list[dict]:
    """The run's metrics.jsonl without its timings."""
    return without_timing(read_jsonl(Path(workdir) / 'metrics.jsonl'))


def checkpoint_steps(workdir) -> list[int]:
    from jaxconv.training.checkpoints import Checkpoints

    ckpts = Checkpoints(workdir)
    try:
        return ckpts.all_steps()
    finally:
        ckpts.close()


def checkpoint_leaves(workdir, step: int | None = None) -> tuple[int, list]:
    """(step, every array of the train state as numpy) of checkpoint ``step`` (default: the
    latest): structure-free, for comparing two runs bit for bit."""
    import jax
    import numpy as np

    from jaxconv.training.checkpoints import Checkpoints

    ckpts = Checkpoints(workdir)
    try:
        step = ckpts.latest_step() if step is None else step
        state, _ = ckpts.restore(step)
    finally:
        ckpts.close()
    return step, [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


# ------------------------------------------------------------------------------------------------
# Subprocesses
# ------------------------------------------------------------------------------------------------
def kill_when(
    proc: subprocess.Popen,
    predicate: Callable[[], bool],
    *,
    timeout: float = 300,
    poll: float = 0.005,
    delay: float = 0.0,
) -> int | None:
    """SIGKILL ``proc`` ``delay`` seconds after ``predicate()`` first holds, polling every
    ``poll`` seconds; kill it anyway after ``timeout`` or on an exception, and reap it. Returns
    its exit status: ``-SIGKILL`` unless it ended by itself first (the caller asserts which)."""
    try:
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if predicate():
                time.sleep(delay)
                break
            time.sleep(poll)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode
