"""AttemptDeadline and the monitor, on real sockets: expiry cuts a read, detached connections
are left alone, a connection attached after expiry is cut at once."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from connector.http.deadline import AttemptDeadline, DeadlineMonitor


@dataclass
class FakeConnection:
    """Just what AttemptDeadline looks at: the `sock` attribute of a urllib3 connection."""

    sock: socket.socket | None


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def is_shut_down(sock: socket.socket) -> bool:
    """EOF on the local end: it was shut down (at once, or when a monitor gets to it)."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def is_open(pair: tuple[socket.socket, socket.socket]) -> bool:
    """A byte from the peer arrives: the local end still reads (known at once, no waiting
    out a timeout)."""
    local, peer = pair
    peer.sendall(b"x")
    local.settimeout(5)
    return local.recv(1) == b"x"


def test_expiry_shuts_the_attached_socket_down(pair: tuple[socket.socket, socket.socket]) -> None:
    attempt = AttemptDeadline(time.monotonic() + 60)
    attempt.attach(FakeConnection(pair[0]))  # type: ignore[arg-type]
    attempt.expire()
    assert attempt.expired
    assert is_shut_down(pair[0])


def test_socket_is_kept_when_the_connection_drops_its_reference(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """http.client sets conn.sock = None after the headers of a `Connection: close` answer."""
    connection = FakeConnection(pair[0])
    attempt = AttemptDeadline(time.monotonic() + 60)
    attempt.attach(connection)  # type: ignore[arg-type]
    connection.sock = None
    attempt.expire()
    assert is_shut_down(pair[0])


def test_a_detached_connection_is_never_cut(pair: tuple[socket.socket, socket.socket]) -> None:
    """Back in the pool, the connection may already serve another thread's request."""
    connection = FakeConnection(pair[0])
    attempt = AttemptDeadline(time.monotonic() + 60)
    attempt.attach(connection)  # type: ignore[arg-type]
    attempt.detach(connection)  # type: ignore[arg-type]
    attempt.expire()
    assert is_open(pair)


def test_attaching_after_expiry_cuts_at_once(pair: tuple[socket.socket, socket.socket]) -> None:
    """The deadline passed while the connection was still connecting."""
    attempt = AttemptDeadline(time.monotonic() + 60)
    attempt.expire()
    attempt.attach(FakeConnection(pair[0]))  # type: ignore[arg-type]
    assert is_shut_down(pair[0])


def test_a_finished_attempt_leaves_its_connection_alone(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    attempt = AttemptDeadline(time.monotonic() + 60)
    attempt.attach(FakeConnection(pair[0]))  # type: ignore[arg-type]
    attempt.finish()
    attempt.expire()
    assert not attempt.expired
    assert is_open(pair)


def test_the_monitor_expires_in_deadline_order(pair: tuple[socket.socket, socket.socket]) -> None:
    monitor = DeadlineMonitor()
    try:
        late = monitor.watch(60)
        soon = monitor.watch(0.05)  # earlier than what the monitor sleeps towards: wakes it
        soon.attach(FakeConnection(pair[0]))  # type: ignore[arg-type]
        assert is_shut_down(pair[0])
        assert soon.expired and not late.expired
    finally:
        monitor.close()
