"""A response is only ever the answer to its own request: interim 1xx responses are skipped on
every connection, and a connection on which anything unexpected happened is closed, never
pooled. Against a raw-socket server that writes exactly the bytes each case needs."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from ground_truth import dataset_rows
from helpers import TOKEN, PrivateCA
from raw_server import RawReply, RawServer, json_response, response

from connector import extract
from connector.config import RegistrySettings, parse_config
from connector.errors import ExitCode, TargetError
from connector.http.client import RegistryClient
from connector.http.framing import MAX_INTERIM_RESPONSES


def body(model: str, count: int) -> dict[str, Any]:
    latest = {"id": model, "name": f"acme/{model}", "version": "1.0.0", "download_count": count}
    return {"name": f"acme/{model}", "latest": latest, "versions": ["1.0.0"]}


A, B = body("a", 111), body("b", 222)
EARLY_HINTS = response(103, b"", "Link: </style.css>; rel=preload", reason="Early Hints")
PROCESSING = response(102, reason="Processing")


def client_for(server: RawServer, private_ca: PrivateCA | None = None, **extra: Any) -> Any:
    settings = RegistrySettings.model_validate(
        {
            "base_url": server.url,
            "token": TOKEN,
            "concurrency": 1,  # one pooled connection: every request after the first reuses it
            "timeout_seconds": 5,
            "retry": {"max_attempts": 1},
            **({"ca_bundle": str(private_ca.bundle)} if private_ca else {}),
            **extra,
        }
    )
    return RegistryClient(settings)


@pytest.mark.parametrize(
    "interim",
    [EARLY_HINTS, PROCESSING, PROCESSING + EARLY_HINTS + response(100, reason="Continue")],
    ids=["103", "102", "102-103-100"],
)
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_interim_responses_are_skipped_never_taken_for_the_answer(
    interim: bytes, tls: bool, private_ca: PrivateCA
) -> None:
    """The final answer of `a` comes after its interim responses, held until the client sends
    its next request (or 0.05 s): a client that took the 1xx for the answer would read `a`'s
    data as the answer to `b`."""
    replies = [RawReply(interim, later=json_response(A)), RawReply(json_response(B))]
    with RawServer(replies, tls=private_ca.server if tls else None) as server:
        with client_for(server, private_ca if tls else None) as client:
            first = client.list_model_versions("acme", "a")
            second = client.list_model_versions("acme", "b")
    assert (first.status, first.payload) == (200, A)
    assert (second.status, second.payload) == (200, B)
    assert server.connections == 1  # skipping them keeps the connection usable


def test_no_model_is_stored_with_another_s_data_after_interim_responses(
    tmp_path: Path, token_env: str
) -> None:
    replies = [RawReply(EARLY_HINTS, later=json_response(A)), RawReply(json_response(B))]
    with RawServer(replies) as server:
        document = {
            "registry": {
                "base_url": server.url,
                "token": "${MODEL_REGISTRY_TOKEN}",
                "concurrency": 1,
                "version_detail": "off",
            },
            "orgs": [{"name": "acme", "models": ["a", "b"]}],
            "output": {"uri": str(tmp_path / "out")},
        }
        summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.OK, summary.failures
    rows = dataset_rows(tmp_path / "out")
    assert [(r["model"], r["model_name"], r["download_count"]) for r in rows] == [
        ("a", "acme/a", 111),
        ("b", "acme/b", 222),
    ]


def test_a_server_sending_interim_responses_forever_is_cut_off() -> None:
    flood = PROCESSING * (MAX_INTERIM_RESPONSES + 1)
    with RawServer([RawReply(flood, later=json_response(A))]) as server:
        with client_for(server) as client, pytest.raises(TargetError) as caught:
            client.list_model_versions("acme", "a")
    assert caught.value.error_type == "connection_error"
    assert f"more than {MAX_INTERIM_RESPONSES} interim (1xx) responses" in caught.value.detail


def chunked(document: dict[str, Any]) -> bytes:
    data = json.dumps(document).encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


UNCLEAN = {
    # bytes after the end of the body: another response, smuggled behind the first
    "trailing bytes": json_response(A) + json_response(A),
    # framed twice: which of the two framings the server meant is a guess
    "chunked and content-length": response(
        200, chunked(A), "Transfer-Encoding: chunked", "Content-Length: 3"
    ),
}


@pytest.mark.parametrize("first", UNCLEAN.values(), ids=UNCLEAN.keys())
def test_a_connection_whose_response_did_not_end_cleanly_is_never_reused(first: bytes) -> None:
    with RawServer([RawReply(first), RawReply(json_response(B))]) as server:
        with client_for(server) as client:
            answered = client.list_model_versions("acme", "a")
            second = client.list_model_versions("acme", "b")
    assert answered.payload == A
    assert second.payload == B
    assert server.connections == 2  # the first connection was closed, not pooled


def test_a_body_over_the_size_cap_closes_its_connection() -> None:
    big = json.dumps({**A, "pad": "x" * 4096}).encode()
    replies = [RawReply(response(200, big)), RawReply(json_response(B))]
    with RawServer(replies) as server:
        with client_for(server, max_response_bytes=1024) as client:
            with pytest.raises(TargetError, match="exceeds max_response_bytes"):
                client.list_model_versions("acme", "a")
            assert client.list_model_versions("acme", "b").payload == B
    assert server.connections == 2  # its unread body never reaches the next request


def test_bytes_smuggled_behind_a_tls_response_never_answer_the_next_request(
    tmp_path: Path, token_env: str, private_ca: PrivateCA
) -> None:
    """One TLS record holding `a`'s answer, filler, and at byte 8192 a whole response with
    `a`'s data: the reader's 8 KiB buffer takes the filler, the smuggled answer waits decrypted
    in the TLS layer, where a readable-socket check cannot see it. Reused, the connection
    would hand it to `b`."""
    first = json_response(A)
    smuggled = json_response({**A, "note": "smuggled"})
    record = first + b" " * (8192 - len(first)) + smuggled
    replies = [RawReply(record), RawReply(json_response(B))]
    with RawServer(replies, tls=private_ca.server) as server:
        document = {
            "registry": {
                "base_url": server.url,
                "token": "${MODEL_REGISTRY_TOKEN}",
                "concurrency": 1,
                "version_detail": "off",
                "ca_bundle": str(private_ca.bundle),
            },
            "orgs": [{"name": "acme", "models": ["a", "b"]}],
            "output": {"uri": str(tmp_path / "out")},
        }
        summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.OK, summary.failures
    rows = dataset_rows(tmp_path / "out")
    assert [(r["model"], r["download_count"], r["extra"]) for r in rows] == [
        ("a", 111, None),
        ("b", 222, None),
    ]
    assert server.connections == 2
