"""Graceful stop on SIGINT / SIGTERM: finish the current step, checkpoint, exit.

The handler only records the signal; the training loop polls :attr:`StopRequest.signum` between
steps, so no step, metric line or checkpoint is ever left half done. A second signal falls back
to the previous handler (a second Ctrl-C raises ``KeyboardInterrupt`` at once); orbax's
write-then-rename keeps even that from corrupting a checkpoint.
"""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Context manager that turns SIGINT and SIGTERM into a polled request to stop."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: stop now
            previous = self._previous.get(signum, signal.SIG_DFL)
            signal.signal(signum, previous)
            signal.raise_signal(signum)
            return
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous.clear()
