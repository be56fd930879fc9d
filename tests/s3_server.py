"""A real S3 API on 127.0.0.1 for the tests: moto's server app behind a gate that can hold a
chosen request (an upload, the publishing copy) until the test has done what it needs, e.g.
SIGKILLed the client mid-upload. No mock of our code: the connector talks HTTP to it through
pyarrow's own S3 client, exactly as it would to AWS, MinIO or R2."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

Environ = dict[str, Any]
Predicate = Callable[[Environ], bool]


class _QuietHandler(MotoRequestHandler):  # type: ignore[misc]
    # werkzeug writes a response's headers and its body separately: with Nagle's algorithm the
    # body waits for the client's delayed ACK on a kept-alive connection.
    disable_nagle_algorithm = True

    def log_request(self, *_: Any) -> None:
        return


@dataclass
class Gate:
    """Holds the first request matching `predicate` until `release()`; `arrived` is set when it
    is held. A dropped request never reaches the store (as if the client died before sending)."""

    predicate: Predicate
    drop: bool = False

    def __post_init__(self) -> None:
        self.arrived = threading.Event()
        self._released = threading.Event()
        self.used = False

    def release(self) -> None:
        self._released.set()

    def wait_released(self) -> None:
        self._released.wait(120)


class S3Server:
    """moto's S3 on a free loopback port, in a thread; every request is recorded."""

    def __init__(self) -> None:
        self._app = DomainDispatcherApplication(create_backend_app)
        self._gates: list[Gate] = []
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        for gate in self._gates:
            gate.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def hold(self, predicate: Predicate, *, drop: bool = False) -> Gate:
        """Hold the next request that matches; see Gate."""
        gate = Gate(predicate, drop)
        with self._lock:
            self._gates.append(gate)
        return gate

    def _wsgi(self, environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
            gate = next((g for g in self._gates if not g.used and g.predicate(environ)), None)
            if gate is not None:
                gate.used = True
        if gate is not None:
            gate.arrived.set()
            gate.wait_released()
            if gate.drop:
                start_response("503 Service Unavailable", [("Content-Length", "0")])
                return [b""]
        result: Iterable[bytes] = self._app(environ, start_response)
        return result


def is_upload_to(part: str) -> Predicate:
    """A PUT (object, multipart part or copy) whose key contains `part`."""
    return lambda environ: environ["REQUEST_METHOD"] == "PUT" and part in environ["PATH_INFO"]


def is_copy_to(part: str) -> Predicate:
    """A server-side copy (PUT with x-amz-copy-source) whose destination contains `part`."""
    return lambda environ: (
        environ["REQUEST_METHOD"] == "PUT"
        and "HTTP_X_AMZ_COPY_SOURCE" in environ
        and part in environ["PATH_INFO"]
    )
