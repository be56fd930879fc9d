"""A raw-socket HTTP/1.1 server that writes exactly the bytes a test scripts: interim 1xx
responses, bytes after a body, two framings at once. `http.server` cannot misbehave this way
(it frames every answer itself), and these are the answers that put one request's data under
another request.

Each request (on any connection, in arrival order) takes the next `RawReply`: `now` is written
at once; `later`, if any, once the client sends its next request on that connection or after
`hold` seconds, whichever comes first. A client that skips interim responses waits for
`later` (and gets it after `hold`); one that takes a 103 for the answer sends its next request
first and then reads `later` as the answer to that one.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def response(status: int, body: bytes = b"", *headers: str, reason: str = "X") -> bytes:
    """One HTTP/1.1 response; Content-Length is added unless a header already frames it."""
    lines = [f"HTTP/1.1 {status} {reason}", *headers]
    if status >= 200 and not any(h.lower().startswith("content-length") for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_response(document: Any) -> bytes:
    return response(200, json.dumps(document).encode(), "Content-Type: application/json")


@dataclass(frozen=True)
class RawReply:
    now: bytes
    later: bytes = b""
    hold: float = 0.05


class RawServer:
    """Serves `replies` in order (the last one repeats); records each request's first line and
    headers, and counts the connections it accepted."""

    def __init__(self, replies: list[RawReply], tls: tuple[Path, Path] | None = None) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(*tls)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self._context else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            if self._context is not None:
                connection = self._context.wrap_socket(connection, server_side=True)
            pending = b""
            while True:
                head, pending = self._read_request(connection, pending)
                if head is None:
                    return
                reply = self._next(head)
                connection.sendall(reply.now)
                if reply.later:
                    select.select([connection], [], [], reply.hold)
                    connection.sendall(reply.later)
        except OSError:
            return
        finally:
            connection.close()

    def _read_request(self, connection: socket.socket, pending: bytes) -> tuple[str | None, bytes]:
        while b"\r\n\r\n" not in pending:
            chunk = connection.recv(65536)
            if not chunk:
                return None, b""
            pending += chunk
        head, _, rest = pending.partition(b"\r\n\r\n")
        return head.decode("latin-1"), rest

    def _next(self, head: str) -> RawReply:
        first, *lines = head.split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines)
        with self._lock:
            self.requests.append((first, headers))
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
