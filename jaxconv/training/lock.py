"""One training process per workdir: ``<workdir>/.train.lock``, held with ``flock``.

Two runs writing the same checkpoints and metrics would corrupt both, and the second would only
notice much later, if ever. The lock is an advisory ``flock`` on a file that records the
holder's pid: the kernel drops it when the process ends, however it ends, so a crashed or killed
run never leaves a stale lock behind (the pid inside is only read while the lock is held).
Locks taken during one call of ``fit`` are released when it returns or raises
(:func:`released_after`), so a process may run several trainings one after another.
"""

from __future__ import annotations

import fcntl
import functools
import os
from pathlib import Path

from jaxconv.training.errors import ConfigError

LOCK_FILE = '.train.lock'

# path -> open file holding the lock, for the locks this process holds.
_held: dict[Path, object] = {}


class WorkdirLockedError(ConfigError):
    """Another process is training in this workdir."""


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        pid = ''
    return f'pid {pid}' if pid else 'another process'


def _try_lock(path: Path) -> object:
    """The open, ``flock``-ed lock file of ``path``; ``WorkdirLockedError`` when held elsewhere."""
    lock = path / LOCK_FILE
    handle = open(lock, 'a+')  # 'a+': opening must not erase the holder's pid
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise WorkdirLockedError(
            f'--workdir {path} is in use by another training run '
            f'({_holder(lock)}, see {lock}); wait for it to end or use '
            f'another --workdir'
        ) from None
    return handle


def check_workdir(workdir: str | os.PathLike) -> None:
    """Refuse at once if a run holds ``workdir``; writes nothing (an absent lock file is no
    lock, and a probed one is left as it was)."""
    path = Path(workdir).absolute()
    if path in _held or not (path / LOCK_FILE).is_file():
        return
    handle = _try_lock(path)
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()


def lock_workdir(workdir: str | os.PathLike) -> None:
    """Create ``workdir`` if needed and hold its lock (recording this pid) until the enclosing
    :func:`released_after` call returns."""
    path = Path(workdir).absolute()
    if path in _held:
        return
    path.mkdir(parents=True, exist_ok=True)
    handle = _try_lock(path)
    handle.seek(0)
    handle.truncate()
    handle.write(f'{os.getpid()}\n')
    handle.flush()
    _held[path] = handle


def released_after(fn):
    """Decorate ``fit``: the workdir locks it took are released when it returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = set(_held)
        try:
            return fn(*args, **kwargs)
        finally:
            for path in [p for p in _held if p not in before]:
                handle = _held.pop(path)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                handle.close()

    return wrapper
