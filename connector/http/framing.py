"""Keep every answer with its own request on a kept-alive connection.

Two things in the standard library would let a response be read as the answer to another
request (another model's data stored as this model's):

- HTTP/1.1 lets a server send interim 1xx responses (102 Processing, 103 Early Hints) before
  the final one. `http.client` skips only 100 Continue: it returns a 103 as the response, with
  an empty body, and hands the connection back while the real answer is still on its way, to
  be read by whichever request uses the connection next. `FramedResponse` skips every interim
  response (a bounded number of them) and reads the final one.
- A connection on which something unexpected happened (bytes after the end of a body, a body
  left unread, a response framed both by Content-Length and chunked, a final 1xx) must not
  serve another request. urllib3 throws away an idle pooled connection only when its socket is
  readable, which misses bytes already decrypted and waiting in the TLS layer. So when a
  response ends, `FramedResponse` looks (without blocking) for anything past its end and, if
  it finds some, shuts the socket down; `discard_if_unclean` then closes such a connection
  instead of pooling it.

Wired in by `deadline.py`'s connection and pool classes (`response_class`, `_put_conn`).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from typing import Any

from urllib3.connection import HTTPConnection

MAX_INTERIM_RESPONSES = 16  # a server sending 1xx forever is cut here (and by the deadline)
_CONTINUE = 100
_SWITCHING_PROTOCOLS = 101


class FramedResponse(http.client.HTTPResponse):
    """An `http.client.HTTPResponse` that skips interim 1xx responses and marks its
    connection unusable when the response does not end cleanly."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self._socket = sock
        self._interim = 0

    def _read_status(self) -> tuple[str, int, str]:
        """Every interim status is reported as 100, which `begin()` already skips with its
        headers; 101 (a protocol switch nobody asked for) stays final."""
        version, status, reason = super()._read_status()  # type: ignore[misc]
        if 100 <= status < 200 and status != _SWITCHING_PROTOCOLS:
            self._interim += 1
            if self._interim > MAX_INTERIM_RESPONSES:
                raise http.client.HTTPException(
                    f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses"
                )
            return version, _CONTINUE, reason
        return version, status, reason

    def begin(self) -> None:
        super().begin()
        framed_twice = self.chunked and self.headers.get("Content-Length") is not None
        if self.status < 200 or framed_twice:  # the connection's framing is in doubt
            self.will_close = True

    def _close_conn(self) -> None:
        """The response ends (read to its end, or closed early): anything the server sent
        past it means the connection's framing cannot be trusted any more."""
        fp = self.fp
        if fp is not None and self.will_close is False and _bytes_waiting(fp, self._socket):
            with contextlib.suppress(OSError):
                # The base-class method, also for TLS (as the deadline does): the connection
                # is dead for every later request, and `discard_if_unclean` sees it.
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)
        super()._close_conn()  # type: ignore[misc]


def _bytes_waiting(fp: Any, sock: socket.socket) -> bool:
    """Whether anything is buffered, in the socket or decrypted in TLS, past the response.

    `peek` returns what the reader buffered; with an empty buffer it tries one read, made
    non-blocking here so that it returns at once when nothing came."""
    timeout = sock.gettimeout()
    try:
        sock.settimeout(0)
        return bool(fp.peek(1))
    except (ssl.SSLWantReadError, BlockingIOError):
        return False  # nothing past the end: the connection is clean
    except (OSError, ValueError):
        return True  # cannot tell: do not reuse it
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)


def discard_if_unclean(connection: HTTPConnection | None) -> None:
    """Close a connection coming back to its pool that is closed, was shut down or has bytes
    waiting: the next request would read them as its answer."""
    if connection is not None and not connection.is_connected:
        connection.close()
