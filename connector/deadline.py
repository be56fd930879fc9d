"""A hard deadline for one HTTP attempt, status line and headers included.

Socket timeouts bound each `recv`, not the whole response: a server (or a broken proxy) that
sends one header line every few seconds would hold a worker for as long as it likes. Here each
attempt registers a deadline; the connection it uses attaches itself when the request starts;
one monitor thread shuts that socket down when the deadline passes, which makes the blocked read
fail at once. Wired in through `DeadlineAdapter`, a `requests` adapter whose urllib3 pools use
connections that know the attempt they serve.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from types import TracebackType
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()


class AttemptDeadline:
    """One attempt's deadline; `expired` tells the caller why its read failed."""

    __slots__ = ("_connection", "_finished", "_lock", "deadline", "expired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._finished = False
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection

    def finish(self) -> None:
        """The attempt is over: never touch its connection again (it may serve someone else)."""
        with self._lock:
            self._finished = True
            self._connection = None

    @property
    def finished(self) -> bool:
        return self._finished

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            sock = self._connection.sock if self._connection is not None else None
            if sock is not None:
                # OSError: already closed, so the read has failed or finished anyway
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> AttemptDeadline:
        _current.attempt = self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        _current.attempt = None
        self.finish()


class DeadlineMonitor:
    """One daemon thread that expires attempts whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, AttemptDeadline]] = []
        self._order = itertools.count()
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="deadline-monitor", daemon=True)
        self._thread.start()

    def watch(self, seconds: float) -> AttemptDeadline:
        """A deadline `seconds` from now; use it as a context manager around the request."""
        attempt = AttemptDeadline(time.monotonic() + seconds)
        with self._condition:
            while self._heap and self._heap[0][2].finished:
                heapq.heappop(self._heap)  # keep the heap small: drop what already finished
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if earliest is None or attempt.deadline < earliest:
                self._condition.notify()  # only wake the monitor when it must wake sooner
        return attempt

    def _run(self) -> None:
        with self._condition:
            while not self._closed:
                if not self._heap:
                    self._condition.wait()
                    continue
                deadline, _, attempt = self._heap[0]
                wait = deadline - time.monotonic()
                if attempt.finished:
                    heapq.heappop(self._heap)
                elif wait > 0:
                    self._condition.wait(wait)
                else:
                    heapq.heappop(self._heap)
                    attempt.expire()

    def close(self) -> None:
        """Stop the monitor thread."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join()


class _AttachesToAttempt:
    """Mixin for urllib3 connections: attach to the attempt running on this thread."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        attempt: AttemptDeadline | None = getattr(_current, "attempt", None)
        if attempt is not None:
            attempt.attach(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _DeadlineHTTPConnection(_AttachesToAttempt, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_AttachesToAttempt, HTTPSConnection):
    pass


class _DeadlineHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections can be cut off by an `AttemptDeadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPConnectionPool,
            "https": _DeadlineHTTPSConnectionPool,
        }
