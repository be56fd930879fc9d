"""A simulated model registry on a loopback socket, for the demo, the tests and the benchmarks.

Everything it serves derives from a seed and a simulated day, never from the wall clock, so a
test can compare what the connector stored with `expected_rows()` exactly. Faults (see
`simulator_faults`) are drawn per target and attempt number, so outcomes do not depend on how
the client's threads interleave. Bodies are cached per (target, day): the benchmark needs
hundreds of requests per second from a standard-library server on two cores.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import signal
import socket
import socketserver
import struct
import sys
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from connector.credentials import AUTH_SCHEMES
from connector.simulator import catalog as data
from connector.simulator.faults import (
    MALFORMED_KINDS,
    FaultPlan,
    Reply,
    draw_fault,
    error_reply,
    malformed_reply,
    status_reply,
    with_counts,
)
from connector.simulator.snippet import calendar_line, config_snippet

__all__ = [
    "MALFORMED_KINDS",
    "FaultPlan",
    "SimulatedRegistry",
    "SimulatorConfig",
    "SimulatorStats",
    "is_loopback_host",
    "serve_forever_cli",
]


def is_loopback_host(host: str) -> bool:
    """True for names and addresses that can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# The `versions` shape `connector simulate` and `make demo` serve unless told otherwise.
DEFAULT_VERSIONS_SHAPE = "strings"
# The catalog is built whole at start-up (every model's versions): these keep a typo such as
# `--orgs 999999999` an error instead of a process that eats the machine's memory. The largest
# benchmark serves 20,000 models of about 5 versions.
MAX_MODELS = 200_000  # orgs x models_per_org
MAX_VERSIONS_PER_MODEL = 1_000
MAX_VERSIONS = 2_000_000  # orgs x models_per_org x versions_per_model (the mean)
MAX_DAY = 36_500  # a century of simulated days


@dataclass(frozen=True)
class SimulatorConfig:
    """The registry's content and behaviour; equal configs serve byte-identical bodies."""

    seed: int = 0
    orgs: int = 2
    models_per_org: int = 3
    versions_per_model: int = 5
    empty_models: int = 0
    day: int = 1
    start_date: date = date(2026, 1, 1)
    token: str = "sim-token"
    org_tokens: Mapping[str, str] = field(default_factory=dict)
    # How the token must come: "bearer" (Authorization: Bearer) or "api-key" (X-API-Key);
    # exactly one credential header, the other one absent. Per org where given.
    auth_scheme: str = "bearer"
    org_auth_schemes: Mapping[str, str] = field(default_factory=dict)
    # listModels serves at most this many models a page, whatever `limit` asks (None: 100).
    page_cap: int | None = None
    # The version list's own `name`: "canonical" (org/model) or "slug", both as the contract says.
    list_name: str = "canonical"
    latency_seconds: float = 0.0
    versions_shape: str = DEFAULT_VERSIONS_SHAPE
    models_key: str = "models"  # listModels' list key: "models" (the contract) or "items"
    faults: FaultPlan = field(default_factory=FaultPlan)
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if self.orgs < 1 or self.models_per_org < 1 or self.versions_per_model < 1:
            raise ValueError("orgs, models_per_org and versions_per_model must be at least 1")
        models = self.orgs * self.models_per_org
        if models > MAX_MODELS:
            raise ValueError(f"orgs x models_per_org is {models:,}: at most {MAX_MODELS:,}")
        if self.versions_per_model > MAX_VERSIONS_PER_MODEL:
            raise ValueError(f"versions_per_model must be at most {MAX_VERSIONS_PER_MODEL:,}")
        if models * self.versions_per_model > MAX_VERSIONS:
            raise ValueError(
                f"orgs x models_per_org x versions_per_model is "
                f"{models * self.versions_per_model:,}: at most {MAX_VERSIONS:,}"
            )
        if not 0 <= self.empty_models <= models:
            raise ValueError("empty_models must be between 0 and the number of models")
        if not 1 <= self.day <= MAX_DAY:
            raise ValueError(f"day must be between 1 and {MAX_DAY:,}, got {self.day}")
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must not be negative")
        if self.models_key not in ("models", "items"):
            raise ValueError("models_key must be models or items")
        for scheme in (self.auth_scheme, *self.org_auth_schemes.values()):
            if scheme not in AUTH_SCHEMES:
                raise ValueError(f"auth scheme {scheme!r} is not one of {', '.join(AUTH_SCHEMES)}")
        if self.page_cap is not None and self.page_cap < 1:
            raise ValueError(f"page_cap must be at least 1, got {self.page_cap}")
        if self.list_name not in ("canonical", "slug"):
            raise ValueError("list_name must be canonical or slug")
        if self.versions_shape not in data.VERSIONS_SHAPES:
            raise ValueError(f"versions_shape must be one of {', '.join(data.VERSIONS_SHAPES)}")
        if not is_loopback_host(self.host):
            raise ValueError(f"host {self.host!r} is not a loopback address")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range")
        object.__setattr__(self, "org_tokens", MappingProxyType(dict(self.org_tokens)))
        object.__setattr__(self, "org_auth_schemes", MappingProxyType(dict(self.org_auth_schemes)))


@dataclass(frozen=True)
class SimulatorStats:
    """A snapshot of what the server saw. Resets (no answer at all) count under status 0;
    `by_target` counts listModelVersions requests only, the call the connector exists for."""

    requests: int
    by_status: dict[int, int]
    by_target: dict[str, int]
    authorization_headers_seen: list[str | None]
    by_operation: dict[str, int] = field(default_factory=dict)  # API routes by operationId
    api_key_headers_seen: list[str | None] = field(default_factory=list)


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Credentials:
    """The credential headers a request carried (None: absent)."""

    authorization: str | None
    api_key: str | None


def _operation(parts: list[str]) -> str | None:
    """The contract operation a request path names, if any."""
    if parts[:4] != ["", "api", "v1", "org"] or len(parts) < 6 or parts[5] != "models":
        return None
    if len(parts) == 6:
        return "listModels"
    if len(parts) == 8:
        return "listModelVersions" if parts[7] == "versions" else "getModelVersion"
    return None


class SimulatedRegistry:
    """The registry: owns the catalog, the day, the fault plan and the HTTP server thread."""

    def __init__(self, config: SimulatorConfig = SimulatorConfig()) -> None:
        self.config = config
        self._catalog = data.build_catalog(config)
        self._orgs = {org for org, _ in self._catalog}
        self._lock = threading.Lock()
        self._day = config.day
        self._faults = config.faults
        self._attempts: Counter[str] = Counter()
        self._cache: dict[tuple[str, str, int], bytes] = {}
        self._detail_cache: dict[tuple[str, str, str, int], bytes] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self.reset_stats()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimulatedRegistry:
        """Bind and serve in a daemon thread; returns self so `with` and chaining read well."""
        if self._server is not None:
            return self
        server_class = _Server6 if ":" in self.config.host else _Server
        server = server_class((self.config.host, self.config.port), self)
        self._server, self._port = server, int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            daemon=True,
            name=f"simulated-registry-{self._port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open connection; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatedRegistry:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful when the config asked for port 0)."""
        if self._port is None:
            raise RuntimeError("the simulated registry has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL; the API lives under /api/v1/."""
        host = self.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # -- control -----------------------------------------------------------------------------

    @property
    def day(self) -> int:
        """The simulated day later responses reflect."""
        with self._lock:
            return self._day

    def set_day(self, day: int) -> None:
        """Move the simulated clock; downloads grow and scheduled versions appear."""
        if day < 1:
            raise ValueError(f"day must be at least 1, got {day}")
        with self._lock:
            self._day = day

    def set_faults(self, faults: FaultPlan) -> None:
        """Swap the fault plan; attempt numbering restarts so the new plan replays from 0."""
        with self._lock:
            self._faults = faults
            self._attempts.clear()

    def stats(self) -> SimulatorStats:
        """A copy of the counters, safe to keep while the server goes on."""
        with self._lock:
            return SimulatorStats(
                requests=self._requests,
                by_status=dict(self._by_status),
                by_target=dict(self._by_target),
                authorization_headers_seen=list(self._auth_seen),
                by_operation=dict(self._by_operation),
                api_key_headers_seen=list(self._keys_seen),
            )

    def reset_stats(self) -> None:
        """Zero the counters `stats()` reports (attempt numbering is left alone)."""
        with self._lock:
            self._requests = 0
            self._by_status: Counter[int] = Counter()
            self._by_target: Counter[str] = Counter()
            self._by_operation: Counter[str] = Counter()
            self._auth_seen: list[str | None] = []
            self._keys_seen: list[str | None] = []

    # -- ground truth ------------------------------------------------------------------------

    def targets(self) -> list[tuple[str, str]]:
        """Every (org, model), empty models included, in a stable order."""
        return list(self._catalog)

    def expected_payload(self, org: str, model: str, day: int | None = None) -> dict[str, Any]:
        """The body a fault-free 200 of listModelVersions returns."""
        day = self.day if day is None else day
        versions = self._versions(org, model)
        config = self.config
        return data.versions_payload(
            f"{org}/{model}", versions, day, config.versions_shape, config.list_name
        )

    def expected_rows(
        self, day: int | None = None, version_detail: str = "missing"
    ) -> list[dict[str, Any]]:
        """What a correct connector stores for `day` with that `registry.version_detail`, in
        targets order then newest first."""
        day = self.day if day is None else day
        return data.expected_rows(self._catalog, day, self.config.versions_shape, version_detail)

    def download_count(self, org: str, model: str, version: str, day: int) -> int | None:
        """Total downloads of a version on `day`; None if it is not released (or unknown)."""
        for candidate in self._versions(org, model):
            if candidate.version == version:
                return candidate.downloads(day)
        return None

    def _versions(self, org: str, model: str) -> tuple[data.Version, ...]:
        try:
            return self._catalog[(org, model)]
        except KeyError:
            raise KeyError(f"{org}/{model} is not a simulated model") from None

    # -- answering ---------------------------------------------------------------------------

    def _respond(self, method: str, path: str, credentials: _Credentials) -> Reply:
        """Decide the answer to one request and count it."""
        with self._lock:
            plan, day = self._faults, self._day
        split = urlsplit(path)
        parts = [unquote(part) for part in split.path.split("/")]
        target = f"{parts[4]}/{parts[6]}" if len(parts) == 8 and parts[7] == "versions" else None
        reply = self._decide(method, parts, split.query, credentials, plan, day)
        with self._lock:
            self._requests += 1
            self._by_status[reply.status] += 1
            self._auth_seen.append(credentials.authorization)
            self._keys_seen.append(credentials.api_key)
            if target is not None and parts[:4] == ["", "api", "v1", "org"]:
                self._by_target[target] += 1
            operation = _operation(parts)
            if operation is not None:
                self._by_operation[operation] += 1
        return reply

    def _decide(
        self,
        method: str,
        parts: list[str],
        query: str,
        credentials: _Credentials,
        plan: FaultPlan,
        day: int,
    ) -> Reply:
        """Apply the precedence: 405, 426, unknown path, 401, 403, out of credits, 404,
        status_for, redirect, malformed, then the random faults drawn for this key's attempt
        number."""
        if method != "GET":
            allow = (("Allow", "GET"), ("Connection", "close"))
            return error_reply(405, f"Method {method} not allowed", headers=allow)
        if plan.upgrade_required:
            return error_reply(426, "This client is no longer supported: upgrade the connector")
        if (
            parts[:4] != ["", "api", "v1", "org"]
            or len(parts) not in (6, 8)
            or parts[5] != "models"
        ):
            return error_reply(404, "No such endpoint: " + "/".join(parts))
        org = parts[4]
        refused = self._refused(org, credentials)
        if refused is not None:
            return refused
        if org in plan.forbidden_orgs:
            return error_reply(403, f"This token may not read org {org}")
        if org in plan.out_of_credits_orgs:  # the registry client's InsufficientCreditsError
            return error_reply(429, f"Insufficient credits: org {org} has no credits left")
        if org not in self._orgs:
            return error_reply(404, f"Org {org} not found")
        if len(parts) == 6:
            return self._models_reply(org, query, plan, day)
        key = f"{org}/{parts[6]}"
        if key in plan.not_found or (org, parts[6]) not in self._catalog:
            return error_reply(404, f"Model {key} not found")
        if parts[7] != "versions":
            return self._detail_reply(org, parts[6], parts[7], plan, day)
        if key in plan.status_for:
            return status_reply(plan.status_for[key], key, plan.retry_after)
        if key in plan.redirect:
            return Reply(302, headers=(("Location", plan.redirect[key]),))
        if key in plan.malformed:
            return malformed_reply(plan.malformed[key], self.expected_payload(org, parts[6], day))
        fault, delay = self._draw(plan, key)
        return fault or Reply(200, self._versions_body(org, parts[6], day, plan), delay=delay)

    def _refused(self, org: str, credentials: _Credentials) -> Reply | None:
        """A 401 unless the org's token came in its scheme's header, and no other credential."""
        config = self.config
        scheme = config.org_auth_schemes.get(org, config.auth_scheme)
        token = config.org_tokens.get(org, config.token)
        expected = (
            _Credentials(None, token)
            if scheme == "api-key"
            else _Credentials(f"Bearer {token}", None)
        )
        if credentials == expected:
            return None
        challenge = "ApiKey" if scheme == "api-key" else "Bearer"
        headers = (("WWW-Authenticate", f'{challenge} realm="registry"'),)
        return error_reply(401, "Authentication failed", headers=headers)

    def _draw(self, plan: FaultPlan, key: str) -> tuple[Reply | None, float]:
        with self._lock:
            attempt = self._attempts[key]
            self._attempts[key] += 1
        return draw_fault(plan, key, attempt)

    def _versions_body(self, org: str, model: str, day: int, plan: FaultPlan) -> bytes:
        prefix = f"{org}/{model}/"
        counts = {
            key.removeprefix(prefix): count
            for key, count in plan.download_counts.items()
            if key.startswith(prefix)
        }
        if counts:  # a counter incident: not cached (the plan may change back)
            return _dump(with_counts(self.expected_payload(org, model, day), counts))
        body = self._cache.get((org, model, day))
        if body is None:  # a race computes the same bytes twice, which is harmless
            body = _dump(self.expected_payload(org, model, day))
            self._cache[(org, model, day)] = body
        return body

    def _detail_reply(self, org: str, model: str, name: str, plan: FaultPlan, day: int) -> Reply:
        key = f"{org}/{model}"
        version = next(
            (v for v in data.live(self._catalog[(org, model)], day) if v.version == name), None
        )
        if version is None:
            return error_reply(404, f"Version {name} of {key} not found")
        if f"{key}/{name}" in plan.detail_status:
            return status_reply(plan.detail_status[f"{key}/{name}"], key, plan.retry_after)
        fault, delay = self._draw(plan, f"{key}/{name}")
        if fault is not None:
            return fault
        if f"{key}/{name}" in plan.download_counts:  # a counter incident: not cached
            count = len(data.live(self._catalog[(org, model)], day))
            detail = {
                **data.detail(key, version, day, count),
                "download_count": plan.download_counts[f"{key}/{name}"],
            }
            return Reply(200, _dump(detail), delay=delay)
        body = self._detail_cache.get((org, model, name, day))
        if body is None:
            count = len(data.live(self._catalog[(org, model)], day))
            body = _dump(data.detail(key, version, day, count))
            self._detail_cache[(org, model, name, day)] = body
        return Reply(200, body, delay=delay)

    def _models_reply(self, org: str, query: str, plan: FaultPlan, day: int) -> Reply:
        if org in plan.listing_status:
            return status_reply(plan.listing_status[org], f"{org}/*", plan.retry_after)
        style = data.ListingStyle(
            self.config.models_key, self.config.page_cap, plan.listing_hidden, plan.listing_quirk
        )
        page = data.models_page(self._catalog, org, day, query, style)
        if isinstance(page, list):
            return error_reply(422, "Invalid query parameters", errors=page)
        fault, delay = self._draw(plan, f"{org}?page={page['page']}&limit={page['limit']}")
        return fault or Reply(200, _dump(page), delay=delay)


class _Handler(BaseHTTPRequestHandler):
    """Writes the registry's `Reply`; HTTP/1.1 keep-alive because the client pools connections."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: test and benchmark output stays readable."""

    def do_GET(self) -> None:
        credentials = _Credentials(self.headers.get("Authorization"), self.headers.get("X-API-Key"))
        reply = self.server.registry._respond(self.command, self.path, credentials)
        delay = self.server.latency + reply.delay
        if delay > 0 and self.server.stopping.wait(delay):
            self.close_connection = True
        elif reply.reset:
            self._reset()
        else:
            self._write(reply)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _reset(self) -> None:
        """Abort with a TCP RST: linger 0 makes close() discard the connection at once."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _write(self, reply: Reply) -> None:
        length = reply.length if reply.stream is not None else len(reply.body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(length))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if reply.stream is None:
            self.wfile.write(reply.body)
            return
        for chunk in reply.stream():
            if reply.chunk_delay > 0 and self.server.stopping.wait(reply.chunk_delay):
                self.close_connection = True
                return
            self.wfile.write(chunk)


class _Server(ThreadingHTTPServer):
    """Thread per connection; tracks connections so stop() can end idle keep-alive threads."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], registry: SimulatedRegistry) -> None:
        self.registry = registry
        self.latency = registry.config.latency_seconds
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup of the host; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler thread
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (timeouts, drip, oversize) is expected, not a bug.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


def startup_notes(registry: SimulatedRegistry) -> str:
    """What a person needs to point the connector at this simulator: the token it expects and
    how, its calendar, a config to paste, and the command that files the simulated day's
    counts under the simulated date (not today's real one)."""
    config = registry.config
    day = config.start_date + timedelta(days=registry.day - 1)
    snippet = config_snippet(
        registry.url,
        "./sim-data",
        registry.targets(),
        header="a config for this simulator: save it as sim.yaml, then "
        f"MODEL_REGISTRY_TOKEN={config.token} connector extract --config sim.yaml "
        f"--date {day.isoformat()} --allow-backdate",
        auth_scheme=config.auth_scheme,
    )
    header = "X-API-Key: " if config.auth_scheme == "api-key" else "Authorization: Bearer "
    return (
        f"token {config.token} (every request must send {header}{config.token})\n"
        f"{calendar_line(config.start_date, registry.day)}\n"
        f"{snippet}"
        "Stop with Ctrl-C or SIGTERM."
    )


def serve_forever_cli(config: SimulatorConfig) -> None:
    """Serve until SIGTERM or SIGINT, announcing the URL on one stdout line for the caller.

    The signals are blocked before any thread starts and collected with sigwait, so no handler
    runs at an awkward moment and every thread shuts down through stop().
    """
    signals = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        with SimulatedRegistry(config) as registry:
            print(f"listening on {registry.url}", flush=True)  # first line: callers parse it
            print(startup_notes(registry), flush=True)
            signal.sigwait(signals)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
