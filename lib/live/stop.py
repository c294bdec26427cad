"""How a run is told to stop: Ctrl-C, SIGTERM (a service manager, `kill`, `timeout`) and SIGHUP (the
terminal was closed) all end it the same way, with the output finished and the summary line.

Python's own Ctrl-C raises KeyboardInterrupt wherever the main thread is, also halfway through
writing a frame or finishing the file. Here the signal raises Stopped only outside `held()`
blocks; one that arrives inside waits for the block's end, and once the output is being finished
(`finishing()`) further signals are noted and ignored, so the file is never cut short.
"""

import signal
import sys
import threading
from contextlib import contextmanager

NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
if hasattr(signal, "SIGHUP"):  # not on Windows
    NAMES[signal.SIGHUP] = "SIGHUP: the terminal was closed"


class Stopped(KeyboardInterrupt):
    """The user (or the system) asked the run to stop; `why` says which way."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class StopSignals:
    """Installs the handlers for the run's lifetime (main thread only; elsewhere it does nothing)."""

    def __init__(self):
        self.depth, self.pending, self.final = 0, None, False
        self.saved: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in NAMES:
                self.saved[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self.saved.items():
            signal.signal(number, handler)
        self.saved = {}

    def _handle(self, number: int, frame) -> None:
        why = NAMES.get(number, f"signal {number}")
        if self.final:
            _say(f"{why}: finishing the output first")
        elif self.depth:
            self.pending = self.pending or why
        else:
            raise Stopped(why)

    @contextmanager
    def held(self):
        """A block a signal must not cut in two (a frame being written); it stops the run after."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending and not self.final:  # not reached when the block raised
            why, self.pending = self.pending, None
            raise Stopped(why)

    def finishing(self) -> None:
        """From here on the output is being finished: signals wait."""
        self.final = True


def _say(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # the terminal is gone (SIGHUP)
        pass
