"""Stopping a run from outside: SIGINT/SIGTERM in the CLI, `Interrupt.request()` in the library.

A signal handler runs in the main thread between two bytecodes, possibly while that thread holds
a lock (a queue's, an Event's). So `request()` takes no lock at all: it sets a flag and writes
one byte to a pipe. A watcher thread started by the run reads that pipe and does the real work
(cutting the sockets of requests in flight) in a normal thread context. A second signal means
"now": the process exits at once (the kernel drops the run lock; the next run cleans staging).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNAL_EXIT_BASE = 128  # the shell's convention: a process ended by signal N exits 128 + N


class Interrupt:
    """A stop request for one run; `request()` is safe from a signal handler."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the signal that asked, if one did
        self.requested = False
        self._read_fd, self._write_fd = os.pipe()
        self._closed = False

    def request(self, signum: int | None = None) -> None:
        """Ask the run to stop: no new requests, abandon those in flight, publish nothing."""
        if not self.requested:
            self.signum = signum
            self.requested = True
        with contextlib.suppress(OSError):  # closed: the run is over, nothing to wake
            os.write(self._write_fd, b"!")

    @contextlib.contextmanager
    def watch(self, on_request: Callable[[], None]) -> Iterator[None]:
        """Call `on_request` in a helper thread as soon as a stop is requested, for as long as
        the block runs (at once if one already was)."""
        done = False

        def wait() -> None:
            with contextlib.suppress(OSError):
                os.read(self._read_fd, 1)
            if self.requested and not done:
                on_request()

        thread = threading.Thread(target=wait, name="interrupt-watcher", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done = True
            with contextlib.suppress(OSError):
                os.write(self._write_fd, b".")  # wake the watcher so it ends
            thread.join()
            self._drain()

    def _drain(self) -> None:
        os.set_blocking(self._read_fd, False)
        with contextlib.suppress(OSError):
            while os.read(self._read_fd, 64):
                pass
        os.set_blocking(self._read_fd, True)

    def close(self) -> None:
        """Release the pipe."""
        if not self._closed:
            self._closed = True
            os.close(self._read_fd)
            os.close(self._write_fd)


def signal_name(signum: int | None) -> str:
    """'SIGTERM' for 15; 'a stop request' when no signal asked."""
    if signum is None:
        return "a stop request"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextlib.contextmanager
def stop_on_signals(interrupt: Interrupt) -> Iterator[None]:
    """SIGINT and SIGTERM ask `interrupt` to stop; a second one exits the process at once.

    Only in the main thread (the only one Python delivers signals to); elsewhere a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _: FrameType | None) -> None:
        if interrupt.requested:
            os.write(2, f"{signal_name(signum)} again: exiting at once\n".encode())
            os._exit(SIGNAL_EXIT_BASE + signum)
        interrupt.request(signum)  # the run's watcher thread logs it: no I/O in a handler

    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
