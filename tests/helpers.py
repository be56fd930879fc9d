"""Helpers shared by the test modules (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import duckdb
import pandas as pd
import requests
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from connector.cli import main
from connector.credentials import CREDENTIAL_HEADERS
from connector.dataset.schema import COLUMN_NAMES
from connector.simulator.catalog import RICH_FIELDS
from connector.simulator.faults import Reply
from connector.simulator.server import SimulatedRegistry

TOKEN = "tok-3f9a1c77-secret-do-not-leak"

REPO = Path(__file__).parents[1]
DOCS = REPO / "docs"
QUERYING = DOCS / "querying.md"


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Poll `condition` (for states no event announces, such as another process's files)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def file_hashes(directory: Path) -> dict[str, str]:
    """name -> sha256 of every file in a directory: proof that a snapshot was left untouched."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def docs_block(name: str) -> str:
    """The fenced code block after `<!-- query: NAME ...-->` in docs/querying.md, so the tests
    run exactly what users copy (it cannot drift from what is tested)."""
    text = QUERYING.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- query: {re.escape(name)}\b.*?-->\n```\w*\n(.*?)\n```\n", text, re.DOTALL
    )
    assert match, f"docs/querying.md has no block marked <!-- query: {name} -->"
    return match.group(1)


# The one number a recipe's window depends on: "the latest snapshot against the latest one at
# least N days older", in SQL (`latest - N`) and in Python (`timedelta(days=N)`).
RECIPE_DAYS = re.compile(r"(?<=latest - )\d+(?=\))|(?<=timedelta\(days=)\d+(?=\))")


def recipe_days(code: str) -> int:
    """N of a recipe's window, found once in its code."""
    found = RECIPE_DAYS.findall(code)
    assert len(found) == 1, f"the recipe states its window {len(found)} times, not once"
    return int(found[0])


def named_window(code: str, start: date, end: date) -> str:
    """A recipe with two dates of one's own, edited as docs/querying.md says: SQL replaces the
    `bounds` query, Python sets `start` and `end` after computing them."""
    if code.lstrip().startswith("WITH"):
        named = f"SELECT DATE '{start}' AS start_date, DATE '{end}' AS end_date"
        edited, count = re.subn(r"(?ms)^bounds AS \(.*?^\),$", f"bounds AS ({named}),", code)
    else:
        chosen = f"start, end = date.fromisoformat('{start}'), date.fromisoformat('{end}')"
        edited, count = re.subn(r"(?m)^(start = .*)$", rf"\1\n{chosen}", code)
    assert count == 1, "the recipe no longer computes its window where docs/querying.md says"
    return edited


def run_docs_duckdb(sql: str | None = None, connection: Any = None) -> pd.DataFrame:
    """The docs' DuckDB query, as it is, on `data/` under the current directory."""
    return (connection or duckdb).sql(sql or docs_block("duckdb")).df()


def run_docs_python(name: str, code: str | None = None) -> pd.DataFrame:
    """The docs' pandas or polars code, as it is, on `data/` under the current directory: its
    `result`, as pandas."""
    namespace: dict[str, Any] = {}
    exec(compile(code or docs_block(name), f"docs/querying.md ({name})", "exec"), namespace)
    result = namespace["result"]
    if name == "polars":
        assert type(result).__module__.startswith("polars"), type(result)
        result = result.to_pandas()
    assert isinstance(result, pd.DataFrame)
    return result


def parse_with_cli(arguments: list[str]) -> dict[str, Any]:
    """Let the real CLI parse `SUBCOMMAND ARGS...` (nothing runs): unknown options fail here."""
    name, *rest = arguments
    command = main.get_command(click.Context(main), name)
    assert command is not None, f"connector has no {name!r} command"
    context = command.make_context(name, list(rest))
    return dict(context.params)


def extract_two_days(
    registry: SimulatedRegistry,
    tmp_path: Path,
    version_detail: str = "missing",
    dates: tuple[str, str] = ("2026-01-01", "2026-01-02"),
    out_name: str = "out",
) -> Path:
    """`connector extract` of the simulator's days 1 and 2, filed under `dates`; the dataset
    root."""
    out = tmp_path / out_name
    document = config_document(registry, out, registry_settings={"version_detail": version_detail})
    config = write_config(tmp_path / "c.yaml", document)
    for day, snapshot_date in zip((1, 2), dates, strict=True):
        registry.set_day(day)
        result = CliRunner().invoke(
            main, ["extract", "--config", str(config), "--date", snapshot_date, "--allow-backdate"]
        )
        assert result.exit_code == 0, result.output
    return out


def schema_row(**values: Any) -> dict[str, Any]:
    """An expected dataset row by column name, every column of `schema.COLUMNS` present (null
    where not given): a new nullable column changes no test that does not look at it."""
    unknown = set(values) - set(COLUMN_NAMES)
    assert not unknown, f"not columns of schema.COLUMNS: {sorted(unknown)}"
    return {name: values.get(name) for name in COLUMN_NAMES}


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as `flatten` returns them (by name, a null column may be left out) as the table
    holds them: every column present, in schema order; a key that is no column fails."""
    return [schema_row(**row) for row in rows]


PromKey = tuple[str, frozenset[tuple[str, str]]]


def prom_samples(text: str) -> dict[PromKey, float]:
    """A Prometheus textfile as Prometheus reads it: (metric, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def prom_key(name: str, **labels: str) -> PromKey:
    """The key of one sample in `prom_samples`; `name` without the connector's prefix."""
    return (f"model_versions_connector_{name}", frozenset(labels.items()))


def config_document(
    registry: SimulatedRegistry,
    output: Path,
    *,
    registry_settings: dict[str, Any] | None = None,
    output_settings: dict[str, Any] | None = None,
    orgs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A config for every target of the simulator, fast retries, token from the environment."""
    if orgs is None:
        by_org: dict[str, list[str]] = {}
        for org, model in registry.targets():
            by_org.setdefault(org, []).append(model)
        orgs = [{"name": org, "models": models} for org, models in by_org.items()]
    return {
        "registry": {
            "base_url": registry.url,
            "token": "${MODEL_REGISTRY_TOKEN}",
            "timeout_seconds": 5,
            "concurrency": 4,
            "retry": {
                "max_attempts": 5,
                "backoff_base_seconds": 0.01,
                "backoff_max_seconds": 0.05,
                "max_retry_after_seconds": 1,
            },
            **(registry_settings or {}),
        },
        "orgs": orgs,
        "output": {"uri": str(output), **(output_settings or {})},
    }


def write_config(path: Path, document: dict[str, Any]) -> Path:
    """Write a config document as YAML and return its path."""
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Hostile:
    """`reply` with what a proxy or broken server does and the simulator never does (its
    faults are per body): headers sent as 100 extra lines one per `header_seconds`, or the
    request's credential headers (`Authorization`, `X-API-Key`) echoed into the body. Only
    ScriptedServer plays these."""

    reply: Reply
    header_seconds: float = 0.0
    echo_credentials: bool = False


def dripping(body: bytes, seconds: float, status: int = 200) -> Reply:
    """`body` sent one byte at a time with `seconds` between bytes (the simulator's drip)."""
    return Reply(
        status,
        stream=lambda: (body[index : index + 1] for index in range(len(body))),
        length=len(body),
        chunk_delay=seconds,
    )


def json_reply(status: int, document: Any, **headers: str) -> Reply:
    """A JSON answer."""
    return Reply(status, json.dumps(document).encode(), headers=tuple(headers.items()))


def envelope(status: int, detail: str, error_type: str, **headers: str) -> Reply:
    """The registry's canonical error envelope."""
    return json_reply(status, {"code": status, "detail": detail, "type": error_type}, **headers)


# The fields of a version summary in the registry's `objects` shape (contract v2: the
# optional manifest fields too, each possibly null).
SUMMARY_KEYS = {
    "id",
    "name",
    "version",
    "created_at",
    "download_count",
    "framework",
    "is_public",
    "origin",
    *RICH_FIELDS,
}


def assert_envelope(response: requests.Response, status: int, error_type: str) -> dict[str, Any]:
    """The answer is the registry's canonical JSON error envelope for `status`."""
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["code"] == status
    assert body["type"] == error_type
    assert isinstance(body["detail"], str) and body["detail"]
    return body


VALID_BODY = {
    "name": "acme/m",
    "latest": {
        "id": "1",
        "name": "acme/m",
        "version": "1.0.0",
        "created_at": "2026-01-01T00:00:00Z",
        "download_count": 5,
    },
    "versions": ["1.0.0"],
}


Scripted = Reply | Hostile


@dataclass(frozen=True)
class PrivateCA:
    """A private CA (trustme) and a server certificate it issued for 127.0.0.1."""

    bundle: Path  # the CA's certificate, what `registry.ca_bundle` points at
    server: tuple[Path, Path]  # (certificate chain, key) for the HTTPS test server


class ScriptedServer:
    """A loopback HTTP server that answers from a script, one Reply per request, and records
    every request's headers (urllib3's dummyserver idea: real sockets, exact behaviour).
    Replies are the simulator's own `Reply`, so both servers speak one vocabulary."""

    def __init__(
        self, script: list[Scripted], host: str = "127.0.0.1", tls: tuple[Path, Path] | None = None
    ) -> None:
        self.script = list(script)
        self.requests: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: with Nagle's algorithm the body
            # waits for the client's delayed ACK (up to 40 ms per request on a kept-alive
            # connection), as the simulator also knows.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(dict(self.headers.items()))
                    server.paths.append(self.path)
                    server.arrivals.append(time.monotonic())
                    reply = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                server._answer(self, reply)

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:  # (certificate, key): serve HTTPS
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self._scheme = "https"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def _answer(self, handler: BaseHTTPRequestHandler, scripted: Scripted) -> None:
        hostile = scripted if isinstance(scripted, Hostile) else Hostile(scripted)
        reply = hostile.reply
        if reply.delay:
            time.sleep(reply.delay)
        if reply.reset:
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.close_connection = True
            return
        body = reply.body
        if hostile.echo_credentials:  # like a WAF or debug page that shows the request
            for name in CREDENTIAL_HEADERS:
                if name in handler.headers:
                    body += f"<pre>{name}: {handler.headers[name]}</pre>".encode()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            handler.send_header(name, value)
        length = reply.length if reply.stream is not None else len(body)
        handler.send_header("Content-Length", str(length))
        if hostile.header_seconds:
            try:
                handler.flush_headers()
                for index in range(100):
                    handler.wfile.write(f"X-Slow-{index}: {'x' * 10}\r\n".encode())
                    handler.wfile.flush()
                    time.sleep(hostile.header_seconds)
            except OSError:
                handler.close_connection = True
                return
        handler.end_headers()
        try:
            if reply.stream is None:
                handler.wfile.write(body)
                return
            for chunk in reply.stream():
                handler.wfile.write(chunk)
                handler.wfile.flush()
                time.sleep(reply.chunk_delay)
        except OSError:
            handler.close_connection = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
