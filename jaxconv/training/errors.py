"""Exceptions the training loop raises on purpose, so the CLI can answer each in one line.

``ConfigError`` is a usage error (bad or conflicting arguments, a workdir that holds another run):
``train.py`` turns it into an argparse error (exit code 2) and nothing has been written when it
is raised. ``NonFiniteLossError`` stops a diverged run; the last good checkpoint and metrics are
left as they were.
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base of the errors below."""


class ConfigError(TrainingError, ValueError):
    """The configuration cannot be run (or does not fit the run already in the workdir)."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite; ``step`` is the first global step (0-based)."""

    def __init__(self, message: str, *, step: int, epoch: int):
        super().__init__(message)
        self.step, self.epoch = step, epoch
