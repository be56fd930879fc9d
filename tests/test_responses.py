"""Response classification without sockets: every documented status to its exception, bodies that
are not the error envelope, redaction, Retry-After, and 2xx bodies that are not JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.errors import (
    RETRYABLE_STATUSES,
    ExitCode,
    OrgBlockedError,
    OrgStoppedError,
    PayloadError,
    RetryableError,
    RunAbortedError,
    TargetError,
    TargetFailedError,
    status_error_type,
)
from connector.http.responses import (
    body_snippet,
    error_for_status,
    parse_payload,
    parse_retry_after,
)
from connector.redaction import REDACTED, redact

ORG, MODEL = "acme", "sentiment-small"
JSON = {"Content-Type": "application/json"}
TOKEN = "sk-live-0123456789abcdef"
NOW = datetime(2026, 10, 21, 7, 26, 0, tzinfo=UTC)


def envelope(status: int, detail: str, type_: str, **more: Any) -> bytes:
    return json.dumps({"code": status, "detail": detail, "type": type_, **more}).encode()


def classify(
    status: int, body: bytes, headers: dict[str, str] | None = None, secrets: tuple[str, ...] = ()
) -> TargetError:
    return error_for_status(
        status, JSON if headers is None else headers, body, org=ORG, model=MODEL, secrets=secrets
    )


# status, the class (what the caller must do), the envelope's `type`, the connector's error_type
DOCUMENTED = [
    (400, TargetFailedError, "invalid_request", "bad_request"),
    (401, OrgBlockedError, "authentication_error", "authentication_error"),
    (403, OrgBlockedError, "permission_denied", "permission_error"),
    (404, TargetFailedError, "model_not_found", "not_found"),
    (409, TargetFailedError, "conflict_error", "conflict"),
    (422, TargetFailedError, "request_validation_error", "validation_error"),
    (426, RunAbortedError, "client_too_old", "upgrade_required"),
    (429, RetryableError, "rate_limit_error", "rate_limited"),
    (500, RetryableError, "internal_error", "server_error"),
    (502, RetryableError, "bad_gateway", "server_error"),
    (504, RetryableError, "gateway_timeout", "server_error"),
]


@pytest.mark.parametrize(
    ("status", "error_class", "type_", "default_type"),
    DOCUMENTED,
    ids=[str(d[0]) for d in DOCUMENTED],
)
def test_documented_status_maps_to_its_error(
    status: int,
    error_class: type[TargetError],
    type_: str,
    default_type: str,
) -> None:
    body = envelope(status, f"something about {status}", type_)
    error = classify(status, body)
    assert type(error) is error_class
    assert error.status == status
    assert error.error_type == default_type  # the connector's own vocabulary
    assert error.server_error_type == type_  # the envelope's, kept beside it
    assert error.detail == f"something about {status}"
    assert (error.org, error.model) == (ORG, MODEL)
    assert error.errors == []
    # An error answer's body is not kept: `_rejected/` holds only 2xx bodies that failed
    # validation, and the failure record already has status, type and detail.
    assert not isinstance(error, PayloadError)
    assert not hasattr(error, "raw")
    assert error.retry_after is None
    server = f" (server: {type_})" if type_ != default_type else ""  # said once when equal
    assert str(error) == (
        f"{ORG}/{MODEL}: HTTP {status} {default_type}{server}: something about {status}"
    )


@pytest.mark.parametrize(
    ("status", "error_class", "default_type"),
    [(d[0], d[1], d[3]) for d in DOCUMENTED],
    ids=[str(d[0]) for d in DOCUMENTED],
)
def test_envelope_without_type_keeps_the_connector_error_type(
    status: int, error_class: type[TargetError], default_type: str
) -> None:
    error = classify(status, json.dumps({"code": status, "detail": "d"}).encode())
    assert type(error) is error_class
    assert error.error_type == default_type
    assert error.server_error_type is None
    assert error.detail == "d"


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (418, TargetFailedError, "api_error"),
        (503, RetryableError, "server_error"),
        (501, TargetFailedError, "server_error"),
        (599, TargetFailedError, "server_error"),
        (302, TargetFailedError, "api_error"),
    ],
)
def test_undocumented_statuses_fall_back_by_range(
    status: int, error_class: type[TargetError], error_type: str
) -> None:
    error = classify(status, envelope(status, "x", "t"))
    assert type(error) is error_class
    assert error.status == status
    assert error.error_type == error_type
    assert error.server_error_type == "t"


def test_incompatible_api_aborts_with_its_own_exit_code() -> None:
    error = classify(426, envelope(426, "Upgrade to v2", "upgrade_required"))
    assert error.exit_code == ExitCode.INCOMPATIBLE_API


def test_retryable_statuses() -> None:
    assert frozenset({429, 500, 502, 503, 504}) == RETRYABLE_STATUSES
    for status in range(300, 600):
        retried = isinstance(classify(status, envelope(status, "x", "t")), RetryableError)
        assert retried == (status in RETRYABLE_STATUSES), status


def test_validation_errors_are_kept_with_loc_msg_and_type() -> None:
    errors = [
        {"loc": ["query", "limit"], "msg": "must be <= 100", "type": "less_than_equal"},
        {"loc": ["path", "name", 0], "msg": "bad slug", "type": "pattern"},
        "not an object",
    ]
    error = classify(422, envelope(422, "Validation failed", "validation_error", errors=errors))
    assert error.errors == errors[:2]
    assert str(error) == (
        f"{ORG}/{MODEL}: HTTP 422 validation_error: Validation failed "
        "[query.limit: must be <= 100; path.name.0: bad slug]"
    )


def test_envelope_with_no_detail() -> None:
    error = classify(404, json.dumps({"type": "not_found"}).encode())
    assert error.detail == "(no detail)"
    assert error.error_type == "not_found"


def test_retry_after_header_is_read() -> None:
    error = classify(
        429,
        envelope(429, "Rate limit exceeded", "rate_limit_error"),
        {**JSON, "Retry-After": "30"},
    )
    assert error.retry_after == 30.0


# --- bodies that are not the envelope --------------------------------------------------------

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    ("status", "headers", "body", "detail"),
    [
        (
            502,
            {"Content-Type": "text/html"},
            NGINX_502,
            "non-JSON error body (text/html): 502 Bad Gateway 502 Bad Gateway nginx",
        ),
        (
            403,
            {"Content-Type": "text/html; charset=UTF-8"},
            b"<!DOCTYPE html><p>Request blocked by WAF</p>",
            "non-JSON error body (text/html): Request blocked by WAF",
        ),
        (
            504,
            {},
            b"",
            "non-JSON error body (unknown content type): empty body",
        ),
        (
            500,
            {"Content-Type": "application/json"},
            b"   \n",
            "non-JSON error body (application/json): empty body",
        ),
        (
            503,
            {"Content-Type": "text/plain; charset=utf-8"},
            b"upstream connect error or disconnect/reset before headers\n",
            "non-JSON error body (text/plain): "
            "upstream connect error or disconnect/reset before headers",
        ),
        (
            500,
            {"Content-Type": "application/json"},
            b'{"detail": "truncated',
            'non-JSON error body (application/json): {"detail": "truncated',
        ),
        (
            400,
            {"Content-Type": "application/json"},
            b'{"message": "Bad request", "code": 400}',
            "error body without the envelope (application/json): "
            '{"message": "Bad request", "code": 400}',
        ),
        (
            400,
            {"Content-Type": "application/json"},
            b"null",
            "error body without the envelope (application/json): null",
        ),
        (
            500,
            {"Content-Type": "application/octet-stream"},
            b"\xff\xfe\x00garbage",
            "non-JSON error body (application/octet-stream): \ufffd\ufffd\x00garbage",
        ),
    ],
    ids=[
        "proxy-html",
        "waf-html",
        "empty",
        "whitespace",
        "plain-text",
        "truncated-json",
        "json-without-envelope",
        "json-null",
        "binary",
    ],
)
def test_body_without_envelope_gives_a_clear_error(
    status: int, headers: dict[str, str], body: bytes, detail: str
) -> None:
    error = classify(status, body, headers)
    assert error.detail == detail
    assert error.status == status
    assert error.error_type is status_error_type(status)


def test_deeply_nested_error_body_is_not_a_crash() -> None:
    body = b"[" * 100_000
    error = classify(500, body)
    assert type(error) is RetryableError
    assert error.error_type == "server_error"
    assert error.detail == "non-JSON error body (application/json): " + "[" * 200 + "..."


# --- redaction ---------------------------------------------------------------------------


def test_token_in_detail_is_redacted() -> None:
    body = envelope(401, f"token {TOKEN} is not valid for org acme", "authentication_error")
    error = classify(401, body, secrets=(TOKEN,))
    assert error.detail == f"token {REDACTED} is not valid for org acme"
    assert TOKEN not in str(error)


def test_token_in_validation_errors_is_redacted() -> None:
    errors = [{"loc": ["header", "authorization"], "msg": f"Bearer {TOKEN} bad", "type": "x"}]
    error = classify(422, envelope(422, "bad", "validation_error", errors=errors), secrets=(TOKEN,))
    assert error.errors == [
        {"loc": ["header", "authorization"], "msg": f"Bearer {REDACTED} bad", "type": "x"}
    ]


def test_token_in_a_non_json_body_is_redacted() -> None:
    body = f"<html><body>Authorization: Bearer {TOKEN}</body></html>".encode()
    error = classify(502, body, {"Content-Type": "text/html"}, secrets=(TOKEN, "other-secret"))
    assert error.detail == f"non-JSON error body (text/html): Authorization: Bearer {REDACTED}"


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("a TOKEN b TOKEN", ["TOKEN"], f"a {REDACTED} b {REDACTED}"),
        ("one two", ["one", "two"], f"{REDACTED} {REDACTED}"),
        ("nothing here", ["secret"], "nothing here"),
        ("keep", [""], "keep"),
        ("keep", [], "keep"),
    ],
)
def test_redact(text: str, secrets: list[str], expected: str) -> None:
    assert redact(text, secrets) == expected


# --- body_snippet ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"", "text/html", "empty body"),
        (b"<p></p>", "text/html", "empty body"),
        (b"a\n\n  b\tc", "text/plain", "a b c"),
        (b"  <b>bold</b> move", "", "bold move"),
        (b"1 < 2 > 0", "text/plain", "1 < 2 > 0"),
        (b"x" * 200, "text/plain", "x" * 200),
        (b"x" * 201, "text/plain", "x" * 200 + "..."),
        ("é".encode() * 300, "text/plain", "é" * 200 + "..."),
    ],
)
def test_body_snippet(body: bytes, content_type: str, expected: str) -> None:
    assert body_snippet(body, content_type) == expected


# --- Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("Wed, 21 Oct 2026 07:28:00 GMT", 120.0),
        ("Wed, 21 Oct 2026 09:28:00 +0200", 120.0),
        ("Wednesday, 21-Oct-26 07:28:00 GMT", 120.0),
        ("Wed Oct 21 07:28:00 2026", 120.0),
        ("Wed, 21 Oct 2026 07:26:00 GMT", 0.0),
        ("Tue, 20 Oct 2026 07:28:00 GMT", 0.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        ("-5", None),
        ("1e3", None),
        ("Wed, 32 Oct 2026 07:28:00 GMT", None),
        ("Fri, 01 Jan 99999999999999999999 00:00:00 GMT", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


# --- 2xx bodies ------------------------------------------------------------------------


def test_parse_payload_returns_the_json_document() -> None:
    body = b'{"name": "acme/x", "versions": ["1"], "big": 9223372036854775807}'
    assert parse_payload(body, JSON, org=ORG, model=MODEL, status=200) == {
        "name": "acme/x",
        "versions": ["1"],
        "big": 2**63 - 1,
    }


@pytest.mark.parametrize(
    ("body", "content_type", "detail"),
    [
        (
            b'{"name": "acme/x", "versions": [',
            "application/json",
            "invalid JSON: Expecting value: line 1 column 33 (char 32)",
        ),
        (
            b"<html><body><h1>Welcome to nginx!</h1></body></html>",
            "text/html; charset=utf-8",
            "expected JSON, got text/html: Welcome to nginx!",
        ),
        (b"", "application/json", "empty body where a JSON document was expected"),
        (b" \r\n", "", "empty body where a JSON document was expected"),
        (b"OK", "", "expected JSON, got no content type: OK"),
        (
            b"[" * 100_000,
            "application/json",
            "invalid JSON: maximum recursion depth exceeded while decoding a JSON array from "
            "a unicode string",
        ),
    ],
    ids=["truncated", "html-with-200", "empty", "whitespace", "plain-text", "deeply-nested"],
)
def test_parse_payload_rejects_what_is_not_json(
    body: bytes, content_type: str, detail: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_payload(body, {"Content-Type": content_type}, org=ORG, model=MODEL, status=200)
    error = caught.value
    assert error.detail == detail
    assert error.raw == body
    assert error.error_type == "invalid_json"
    assert (error.org, error.model, error.status) == (ORG, MODEL, 200)
    assert str(error) == f"{ORG}/{MODEL}: HTTP 200 invalid_json: {detail}"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_constants_are_rejected(constant: str) -> None:
    body = f'{{"name": "a/b", "versions": [], "score": {constant}}}'.encode()
    with pytest.raises(PayloadError) as caught:
        parse_payload(body, {"Content-Type": "application/json"}, org="a", model="b", status=200)
    assert caught.value.error_type == "invalid_json"
    assert f"{constant.lstrip('-')} is not valid JSON" in caught.value.detail


@pytest.mark.parametrize(
    ("detail", "credits"),
    [
        ("Insufficient credits: org acme has no credits left", True),
        ("CREDIT balance exhausted", True),  # any mention, as the registry's client reads it
        ("Rate limit exceeded", False),
        ("Too many requests from a discredited key", True),  # the client's rule, taken as is
    ],
)
def test_a_429_that_mentions_credit_is_out_of_credits_not_a_rate_limit(
    detail: str, credits: bool
) -> None:
    error = classify(429, envelope(429, detail, "rate_limit_error"), {**JSON, "Retry-After": "1"})
    if credits:
        assert type(error) is OrgStoppedError  # not retried; the org is stopped
        assert error.error_type == "insufficient_credits"
        assert error.detail == (
            f"the org is out of credits; calls for it stop until credits are added: {detail}"
        )
    else:
        assert type(error) is RetryableError and error.error_type == "rate_limited"
    assert error.exit_code is not ExitCode.AUTH


def test_credit_in_a_429_that_is_not_the_envelope_is_a_rate_limit() -> None:
    """Only the envelope's detail says it (a proxy's page mentioning credit cards does not)."""
    page = b"<html>429: add a credit card to raise your limit</html>"
    error = classify(429, page, {"Content-Type": "text/html"})
    assert type(error) is RetryableError and error.error_type == "rate_limited"
