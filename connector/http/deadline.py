"""A hard deadline for one HTTP attempt: connect, TLS, status line, headers and body.

Socket timeouts bound each `recv`, not the whole response: a server (or a broken proxy) that
sends one header line every few seconds would hold a worker for as long as it likes. Here each
attempt registers a deadline; the urllib3 connection serving it attaches itself (when it
connects, and when it sends the request) and records its socket; one monitor thread shuts that
socket down when the deadline passes, so the blocked read fails at once. A connection handed
back to its pool is detached first, so a late expiry can never cut a request that another
thread has started on the same keep-alive connection.

Wired in through `DeadlineAdapter`, a `requests` adapter whose urllib3 pools (direct and
through a proxy) create such connections; they also read responses through `framing.py`. A
connect that is still running when the deadline passes is bounded by the connect timeout and
then cut at once.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from connector.http.framing import FramedResponse, discard_if_unclean

log = logging.getLogger(__name__)
_current = threading.local()
_POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {}  # filled below, after the classes


class AttemptDeadline:
    """One attempt's deadline; `expired` tells the caller why its read failed."""

    __slots__ = (
        "_connection",
        "_finished",
        "_lock",
        "_socket",
        "abandoned",
        "deadline",
        "expired",
        "paused",
    )

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self.abandoned = False  # cut because the run stopped, not because time ran out
        self.paused = False  # waiting on the client itself (DeadlineMonitor.paused)
        self._finished = False
        self._connection: HTTPConnection | None = None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, connection: HTTPConnection) -> None:
        """The connection now serves this attempt; cut it at once if the deadline has passed."""
        with self._lock:
            if self._finished:
                return
            self._connection = connection
            if connection.sock is not None:
                # Kept here: http.client drops conn.sock after reading the headers of a
                # `Connection: close` response, while the body is still read from it.
                self._socket = connection.sock
            connection._deadline_attempt = self  # type: ignore[attr-defined]
            if self.expired:
                self._shutdown()

    def detach(self, connection: HTTPConnection) -> None:
        """The connection went back to its pool: it may serve another attempt next."""
        with self._lock:
            if self._connection is connection:
                self._connection = None
                self._socket = None

    def finish(self) -> None:
        """The attempt is over: never touch its connection again."""
        with self._lock:
            self._finished = True
            self._connection = None
            self._socket = None

    @property
    def finished(self) -> bool:
        return self._finished

    def expire(self, abandoned: bool = False) -> None:
        """Cut the attempt's socket now (`abandoned`: the run stopped; else the time is up)."""
        with self._lock:
            if self._finished or (self.paused and not abandoned):
                return
            self.expired = True
            self.abandoned = self.abandoned or abandoned
            self._shutdown()

    def _shutdown(self) -> None:
        if self._socket is not None:
            # The base-class method, also for TLS: SSLSocket.shutdown would unwrap the TLS
            # object under a thread that is reading from it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)

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
        self._abandoning = False
        self._thread = threading.Thread(target=self._run, name="deadline-monitor", daemon=True)
        self._thread.start()

    def watch(self, seconds: float) -> AttemptDeadline:
        """A deadline `seconds` from now; use it as a context manager around the request."""
        attempt = AttemptDeadline(time.monotonic() + seconds)
        with self._condition:
            if self._abandoning:  # the run stopped: this attempt is cut as soon as it attaches
                attempt.expire(abandoned=True)
                return attempt
            while self._heap and self._heap[0][2].finished:
                heapq.heappop(self._heap)  # keep the heap small: drop what already finished
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if earliest is None or attempt.deadline < earliest:
                self._condition.notify()  # only wake the monitor when it must wake sooner
        return attempt

    @contextlib.contextmanager
    def paused(self, attempt: AttemptDeadline) -> Iterator[None]:
        """Stop `attempt`'s clock while the client waits on itself (for its memory budget,
        between a response's headers and its body): the server is not slow meanwhile. The
        deadline moves on by the time paused; an abandon still cuts the attempt at once."""
        with attempt._lock:
            attempt.paused = True
        started = time.monotonic()
        try:
            yield
        finally:
            with self._condition:
                with attempt._lock:
                    attempt.paused = False
                    attempt.deadline += time.monotonic() - started
                heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
                self._condition.notify()

    def _run(self) -> None:
        with self._condition:
            while not self._closed:
                if not self._heap:
                    self._condition.wait()
                    continue
                deadline, _, attempt = self._heap[0]
                wait = deadline - time.monotonic()
                if attempt.finished or deadline != attempt.deadline:  # or moved by a pause
                    heapq.heappop(self._heap)
                elif wait > 0:
                    self._condition.wait(wait)
                else:
                    heapq.heappop(self._heap)
                    try:
                        attempt.expire()
                    except Exception:  # the monitor must outlive any one attempt
                        log.exception("could not expire an attempt")

    def abandon_all(self) -> None:
        """Cut every attempt in flight, and every later one as it starts (the run stopped)."""
        with self._condition:
            self._abandoning = True
            attempts = [attempt for _, _, attempt in self._heap]
        for attempt in attempts:
            attempt.expire(abandoned=True)

    def close(self) -> None:
        """Stop the monitor thread."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join()


class _AttachesToAttempt:
    """Mixin for urllib3 connections: attach to the attempt running on this thread."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _attach(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)  # a reused keep-alive connection does not connect again
        super().request(*args, **kwargs)  # type: ignore[misc]
        _attach(self)  # connected during request(): record the socket


def _attach(connection: Any) -> None:
    attempt: AttemptDeadline | None = getattr(_current, "attempt", None)
    if attempt is not None:
        attempt.attach(connection)


class _DeadlineHTTPConnection(_AttachesToAttempt, HTTPConnection):
    response_class = FramedResponse  # interim 1xx skipped, unclean ends seen (framing.py)


class _DeadlineHTTPSConnection(_AttachesToAttempt, HTTPSConnection):
    response_class = FramedResponse


class _DetachOnReturn:
    """Mixin for urllib3 pools: a connection coming back is no longer its attempt's, and one
    whose last response did not end cleanly is closed rather than kept for another request."""

    def _put_conn(self, conn: Any) -> None:
        attempt: AttemptDeadline | None = getattr(conn, "_deadline_attempt", None)
        if attempt is not None:
            attempt.detach(conn)
        discard_if_unclean(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _DeadlineHTTPConnectionPool(_DetachOnReturn, HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSConnectionPool(_DetachOnReturn, HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOL_CLASSES.update({"http": _DeadlineHTTPConnectionPool, "https": _DeadlineHTTPSConnectionPool})


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections can be cut off by an `AttemptDeadline`."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOL_CLASSES)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOL_CLASSES)  # proxied requests too
        return manager
