"""Stopping a run from outside: SIGINT/SIGTERM in the CLI, `Interrupt.request()` in the library.

A signal handler runs in the main thread between two bytecodes, possibly while that thread holds
a lock (a queue's, an Event's). So `request()` takes no lock at all: it sets a flag and writes
one byte to a pipe. A watcher thread started by the run reads that pipe and does the real work
(cutting the sockets of requests in flight) in a normal thread context. A second signal means
"now": the process exits at once (the kernel drops the run lock; the next run cleans staging).

Except the same signal again within `REPEAT_WINDOW_SECONDS` of the first: that is the same
request, delivered twice. `timeout` (as the sample crontab runs the connector) sends SIGTERM to
the connector and then to its whole process group, a moment apart; `kill` of a service's
group and a supervisor's retry do the same. Taking that repeat for "now" ended runs with no
summary and no run record. A different signal, or the same one later, still forces the exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

SIGNAL_EXIT_BASE = 128  # the shell's convention: a process ended by signal N exits 128 + N
REPEAT_WINDOW_SECONDS = 2.0  # the same signal again this soon is the same request to stop


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


class SignalHandler:
    """The handler `stop_on_signals` installs: the first SIGINT/SIGTERM asks `interrupt` to
    stop; the same signal again within `window` seconds of it is ignored (the same request);
    any later or different one exits at once through `exit_now` (`os._exit`: no cleanup can
    hang). `clock` and `exit_now` are parameters so the rule is tested without a process."""

    def __init__(
        self,
        interrupt: Interrupt,
        window: float = REPEAT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        exit_now: Callable[[int], object] = os._exit,
    ) -> None:
        self.interrupt = interrupt
        self.window = window
        self._clock = clock
        self._exit = exit_now
        self._first: tuple[int, float] | None = None  # (signal, when) of the request

    def __call__(self, signum: int, _: FrameType | None = None) -> None:
        now = self._clock()
        if self._first is None:
            self._first = (signum, now)
            self.interrupt.request(signum)  # the run's watcher thread logs it: no I/O here
            return
        first, when = self._first
        if signum == first and now - when < self.window:  # `timeout`: the process, its group
            os.write(2, f"{signal_name(signum)} again at once: the same request\n".encode())
            return
        os.write(2, f"{signal_name(signum)} again: exiting at once\n".encode())
        self._exit(SIGNAL_EXIT_BASE + signum)


@contextlib.contextmanager
def stop_on_signals(interrupt: Interrupt) -> Iterator[None]:
    """SIGINT and SIGTERM ask `interrupt` to stop; a second one exits the process at once,
    unless it is the same signal within `REPEAT_WINDOW_SECONDS` (`SignalHandler`).

    Only in the main thread (the only one Python delivers signals to); elsewhere a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handle = SignalHandler(interrupt)
    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
