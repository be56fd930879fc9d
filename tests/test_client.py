"""RegistryClient against real loopback servers: auth, headers, status mapping, retries, limits."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from helpers import (
    TOKEN,
    VALID_BODY,
    Hostile,
    PrivateCA,
    ScriptedServer,
    dripping,
    envelope,
    json_reply,
)

from connector import errors
from connector.config import RegistrySettings
from connector.credentials import Credential
from connector.http.client import USER_AGENT, RegistryClient
from connector.http.ratelimit import RateLimiter
from connector.simulator.faults import Reply


def settings(url: str, **overrides: Any) -> RegistrySettings:
    retry = {
        "max_attempts": 4,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.02,
        "max_retry_after_seconds": 5,
        **overrides.pop("retry", {}),
    }
    return RegistrySettings.model_validate(
        {"base_url": url, "token": TOKEN, "timeout_seconds": 5, "retry": retry, **overrides}
    )


def test_success_sends_bearer_token_user_agent_and_escaped_path() -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)]) as server:
        with RegistryClient(settings(server.url)) as client:
            result = client.list_model_versions("acme", "m.v2_x-1")
    assert result.payload == VALID_BODY
    assert (result.status, result.attempts) == (200, 1)
    assert result.request == "GET /api/v1/org/acme/models/m.v2_x-1/versions"
    assert server.requests[0]["Authorization"] == f"Bearer {TOKEN}"
    assert "X-API-Key" not in server.requests[0]
    assert server.requests[0]["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("model-versions-connector/")
    assert server.paths == ["/api/v1/org/acme/models/m.v2_x-1/versions"]


def test_per_org_credential_overrides_default() -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)]) as server:
        with RegistryClient(settings(server.url)) as client:
            client.list_model_versions("acme", "m", Credential("org-token"))
            client.list_model_versions("acme", "m", Credential("org-key", "api-key"))
    assert server.requests[0]["Authorization"] == "Bearer org-token"
    assert (server.requests[1]["X-API-Key"], server.requests[1].get("Authorization")) == (
        "org-key",
        None,
    )


@pytest.mark.parametrize(
    "org,model", [("../etc", "m"), ("acme", "a/b"), ("acme", "%2e%2e"), ("", "m")]
)
def test_invalid_slugs_never_reach_a_url(org: str, model: str) -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)]) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(errors.TargetError, match=r"invalid (org|model) slug"):
                client.list_model_versions(org, model)
    assert server.requests == []


NOT_RETRIED = [
    (400, errors.TargetFailedError, "bad_request"),
    (401, errors.OrgBlockedError, "authentication_error"),
    (403, errors.OrgBlockedError, "permission_error"),
    (404, errors.TargetFailedError, "not_found"),
    (409, errors.TargetFailedError, "conflict"),
    (418, errors.TargetFailedError, "api_error"),
    (422, errors.TargetFailedError, "validation_error"),
    (426, errors.RunAbortedError, "upgrade_required"),
    (501, errors.TargetFailedError, "server_error"),
]


@pytest.mark.parametrize("status,error_class,error_type", NOT_RETRIED)
def test_client_errors_are_not_retried(
    status: int, error_class: type[errors.TargetError], error_type: str
) -> None:
    server_type = f"{error_type}_server"  # the envelope's own word, kept apart
    with ScriptedServer([envelope(status, f"nope {status}", server_type)]) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(error_class) as caught:
                client.list_model_versions("acme", "m")
    assert len(server.requests) == 1
    error = caught.value
    assert type(error) is error_class
    # A 401 says how the token went and that the other scheme exists (test_auth.py).
    detail = f"nope {status}" + (f" ({Credential(TOKEN).refused_hint()})" if status == 401 else "")
    assert (error.status, error.error_type, error.detail, error.attempts) == (
        status,
        error_type,
        detail,
        1,
    )
    assert (error.org, error.model, error.server_error_type) == ("acme", "m", server_type)
    assert f"acme/m: HTTP {status} {error_type} (server: {server_type}): {detail}" == str(error)


@pytest.mark.parametrize(
    "status,error_type",
    [
        (429, "rate_limited"),
        (500, "server_error"),
        (502, "server_error"),
        (503, "server_error"),
        (504, "server_error"),
    ],
)
def test_transient_statuses_are_retried_until_max_attempts(status: int, error_type: str) -> None:
    with ScriptedServer([envelope(status, "busy", "server_error")]) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(errors.RetryableError) as caught:
                client.list_model_versions("acme", "m")
    assert (caught.value.status, caught.value.error_type) == (status, error_type)
    assert len(server.requests) == 4
    assert caught.value.attempts == 4
    assert "(after 4 attempts)" in str(caught.value)


def test_transient_failure_then_success_counts_attempts() -> None:
    script = [
        envelope(502, "bad gateway", "server_error"),
        Reply(0, reset=True),
        Reply(503, b"<html><body>Service Unavailable</body></html>", content_type="text/html"),
        json_reply(200, VALID_BODY),
    ]
    with ScriptedServer(script) as server, RegistryClient(settings(server.url)) as client:
        result = client.list_model_versions("acme", "m")
        by_status = dict(client.requests_by_status)
    assert result.attempts == 4
    assert len(server.requests) == 4
    assert by_status == {"502": 1, "transport_error": 1, "503": 1, "200": 1}


def test_read_timeout_is_retried() -> None:
    script = [Reply(200, b"{}", delay=1.0), json_reply(200, VALID_BODY)]
    with ScriptedServer(script) as server:
        with RegistryClient(settings(server.url, timeout_seconds=0.3)) as client:
            result = client.list_model_versions("acme", "m")
    assert result.attempts == 2


def test_dripping_server_is_cut_off_at_the_total_deadline() -> None:
    body = b'{"name": "acme/m", "versions": []}' + b" " * 200
    script = [dripping(body, 0.05)]
    with (
        ScriptedServer(script) as server,
        RegistryClient(settings(server.url, timeout_seconds=0.25, retry={"max_attempts": 1})) as c,
    ):
        started = time.monotonic()
        with pytest.raises(errors.RetryableError) as caught:
            c.list_model_versions("acme", "m")
        elapsed = time.monotonic() - started
    assert caught.value.error_type == "timeout"
    assert "timeout_seconds=0.25" in caught.value.detail
    # Each byte arrives well within the read timeout, so only a total deadline stops this;
    # the full body would take 11 s.
    assert elapsed < 5


def test_body_over_the_size_cap_fails_without_retry() -> None:
    big = json_reply(200, {"name": "acme/m", "versions": [], "pad": "x" * 5000})
    with ScriptedServer([big]) as server:
        with RegistryClient(settings(server.url, max_response_bytes=2048)) as client:
            with pytest.raises(errors.PayloadError) as caught:
                client.list_model_versions("acme", "m")
    assert caught.value.error_type == "payload_too_large"
    assert len(server.requests) == 1


def test_html_page_with_status_200_is_a_payload_error_with_raw_body() -> None:
    page = Reply(200, b"<html><body>Sign in to the proxy</body></html>", content_type="text/html")
    with ScriptedServer([page]) as server, RegistryClient(settings(server.url)) as client:
        with pytest.raises(errors.PayloadError) as caught:
            client.list_model_versions("acme", "m")
    assert caught.value.error_type == "invalid_json"
    assert "expected JSON, got text/html: Sign in to the proxy" in caught.value.detail
    assert caught.value.raw is not None and b"Sign in" in caught.value.raw


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [r.wait_seconds for r in caplog.records if getattr(r, "event", None) == "retry"]  # type: ignore[attr-defined]


def test_retry_after_seconds_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="connector")
    script = [envelope(429, "slow down", "rate_limit_error", **{"Retry-After": "1"})]
    script.append(json_reply(200, VALID_BODY))
    with ScriptedServer(script) as server, RegistryClient(settings(server.url)) as client:
        client.list_model_versions("acme", "m")
    assert retry_waits(caplog) == [1.0]
    assert server.arrivals[1] - server.arrivals[0] >= 0.95


def test_retry_after_http_date_is_capped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="connector")
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    script = [envelope(503, "maintenance", "server_error", **{"Retry-After": later})]
    script.append(json_reply(200, VALID_BODY))
    with ScriptedServer(script) as server:
        overrides = {"retry": {"max_retry_after_seconds": 0.2}}
        with RegistryClient(settings(server.url, **overrides)) as client:
            client.list_model_versions("acme", "m")
    assert retry_waits(caplog) == [0.2]


def test_unparseable_retry_after_falls_back_to_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="connector")
    script = [envelope(429, "slow down", "rate_limit_error", **{"Retry-After": "soon-ish"})]
    script.append(json_reply(200, VALID_BODY))
    with ScriptedServer(script) as server, RegistryClient(settings(server.url)) as client:
        client.list_model_versions("acme", "m")
    [wait] = retry_waits(caplog)
    assert 0 <= wait <= 0.02  # full jitter within the backoff cap


def test_total_retry_time_is_bounded() -> None:
    """A Retry-After longer than what is left of max_elapsed_seconds ends the retries now,
    instead of sleeping past the budget and trying once more."""
    script = [envelope(503, "down", "server_error", **{"Retry-After": "4"})]
    with ScriptedServer(script) as server:
        overrides = {"retry": {"max_attempts": 50, "max_elapsed_seconds": 1}}
        with RegistryClient(settings(server.url, **overrides)) as client:
            started = time.monotonic()
            with pytest.raises(errors.RetryableError) as caught:
                client.list_model_versions("acme", "m")
            elapsed = time.monotonic() - started
    assert caught.value.attempts == 1
    assert elapsed < 1


class _RetryEvent(logging.Handler):
    """Sets an event when the client logs a retry (it has processed the 429 by then)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "retry":
            self.seen.set()


def test_429_pauses_every_worker_not_only_the_one_that_saw_it() -> None:
    """Worker A gets a 429 with Retry-After: 1 and sleeps; worker B, starting during A's sleep,
    must not send its request before the pause ends either."""
    script = [envelope(429, "slow down", "rate_limit_error", **{"Retry-After": "1"})]
    script += [json_reply(200, VALID_BODY)] * 3
    retrying = _RetryEvent()
    logger = logging.getLogger("connector.http.client")
    logger.addHandler(retrying)
    try:
        with ScriptedServer(script) as server:
            with RegistryClient(settings(server.url), rate_limiter=RateLimiter(None)) as client:
                worker_a = threading.Thread(target=client.list_model_versions, args=("acme", "a"))
                worker_a.start()
                assert retrying.seen.wait(5)  # A has seen the 429 and is sleeping
                client.list_model_versions("acme", "b")  # B, while A sleeps
                worker_a.join()
    finally:
        logger.removeHandler(retrying)
    first_429 = server.arrivals[0]
    assert sorted(p.rsplit("/", 2)[-2] for p in server.paths) == ["a", "a", "b"]
    assert all(arrival - first_429 >= 0.95 for arrival in server.arrivals[1:])


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "proxy"])
def test_headers_dripped_slowly_are_cut_off_at_the_total_deadline(through_proxy: bool) -> None:
    """Each header line arrives well within the read timeout; only a total deadline stops it,
    also when the request goes through a proxy (its pools are built another way)."""
    slow = Hostile(Reply(200, b"{}"), header_seconds=0.05)
    with ScriptedServer([slow]) as server:
        overrides: dict[str, Any] = {"timeout_seconds": 0.25, "retry": {"max_attempts": 1}}
        url = server.url
        if through_proxy:
            overrides["proxy"], url = server.url, "http://registry.invalid"
        with RegistryClient(settings(url, **overrides)) as client:
            started = time.monotonic()
            with pytest.raises(errors.RetryableError) as caught:
                client.list_model_versions("acme", "m")
            elapsed = time.monotonic() - started
    assert caught.value.error_type == "timeout"
    assert elapsed < 2  # 100 header lines would take 5 s


def test_a_401_stops_later_calls_for_that_org_before_they_are_sent() -> None:
    script = [envelope(401, "bad token", "authentication_error"), json_reply(200, VALID_BODY)]
    with ScriptedServer(script) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(errors.OrgBlockedError):
                client.list_model_versions("acme", "a")
            with pytest.raises(errors.SkippedError, match="token for org 'acme' was rejected"):
                client.list_model_versions("acme", "b")
            client.list_model_versions("other-org", "c")
    assert [p.split("/")[4] for p in server.paths] == ["acme", "other-org"]


def test_malformed_redirect_location_fails_the_model_cleanly() -> None:
    with ScriptedServer([Reply(302, headers=(("Location", "http://[bad"),))]) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(errors.TargetFailedError) as caught:
                client.list_model_versions("acme", "m")
    # a redirect like any other: refused, its Location quoted, never parsed or followed
    assert caught.value.error_type == "redirect_refused"
    assert "http://[bad" in caught.value.detail
    assert caught.value.attempts == 1


def test_cookies_are_never_sent_back() -> None:
    set_cookie = json_reply(200, VALID_BODY, **{"Set-Cookie": "session=abc; Path=/"})
    with ScriptedServer([set_cookie, json_reply(200, VALID_BODY)]) as server:
        with RegistryClient(settings(server.url)) as client:
            client.list_model_versions("acme", "a")
            client.list_model_versions("globex", "b")
    assert "Cookie" not in server.requests[1]


def test_requests_go_through_the_configured_proxy() -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)]) as proxy:
        registry = "http://registry.invalid"  # resolvable only by the proxy
        with RegistryClient(settings(registry, proxy=proxy.url)) as client:
            result = client.list_model_versions("acme", "m")
    assert result.payload == VALID_BODY
    assert proxy.paths == [f"{registry}/api/v1/org/acme/models/m/versions"]


def test_redirect_to_another_host_is_refused_and_token_not_sent() -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)]) as other:  # another origin: other port
        location = f"{other.url}/api/v1/org/acme/models/m/versions"
        moved = Reply(302, headers=(("Location", location),))
        with ScriptedServer([moved]) as server:
            with RegistryClient(settings(server.url)) as client:
                with pytest.raises(errors.TargetFailedError) as caught:
                    client.list_model_versions("acme", "m")
    assert caught.value.error_type == "redirect_refused"
    assert not isinstance(caught.value, errors.RetryableError)
    assert other.requests == []
    assert TOKEN not in str(caught.value)


def test_same_origin_redirect_is_not_followed_either() -> None:
    """Following would need a deadline and a size cap per hop; the API has no redirects."""
    with ScriptedServer([json_reply(200, VALID_BODY)]) as server:
        moved = Reply(307, headers=(("Location", "/api/v1/org/acme/models/m/versions"),))
        server.script.insert(0, moved)
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(errors.TargetFailedError) as caught:
                client.list_model_versions("acme", "m")
    assert caught.value.error_type == "redirect_refused"
    assert caught.value.status == 307
    assert "/api/v1/org/acme/models/m/versions" in caught.value.detail
    assert len(server.requests) == 1


def test_connection_refused_is_a_transport_error() -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)]) as server:
        url = server.url
    with RegistryClient(settings(url, retry={"max_attempts": 2})) as client:
        with pytest.raises(errors.RetryableError) as caught:
            client.list_model_versions("acme", "m")
    assert caught.value.error_type == "connection_error"
    assert caught.value.attempts == 2


def test_token_is_not_in_repr_or_errors() -> None:
    echo = envelope(401, f"token {TOKEN} is revoked", "authentication_error")
    with ScriptedServer([echo]) as server:
        client = RegistryClient(settings(server.url))
        with client, pytest.raises(errors.OrgBlockedError) as caught:
            client.list_model_versions("acme", "m")
    assert TOKEN not in repr(client)
    assert TOKEN not in str(caught.value)
    assert "token [REDACTED] is revoked" in caught.value.detail


def test_rate_limit_is_shared_by_threads() -> None:
    with (
        ScriptedServer([json_reply(200, VALID_BODY)]) as server,
        RegistryClient(settings(server.url, max_requests_per_second=20, concurrency=4)) as client,
    ):
        threads = [
            threading.Thread(
                target=lambda: [client.list_model_versions("acme", "m") for _ in range(8)]
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # 32 requests at 20/s with a burst of 20: the last goes out no sooner than 0.6 s after the
    # first (a limiter per thread would let each thread's 8 go at once)
    assert len(server.arrivals) == 32
    assert server.arrivals[-1] - server.arrivals[0] >= 0.55


def test_tls_is_verified_by_default(private_ca: PrivateCA) -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)], tls=private_ca.server) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(errors.TargetFailedError) as caught:
                client.list_model_versions("acme", "m")
    assert caught.value.error_type == "tls_error"
    assert caught.value.attempts == 1  # a certificate problem is not retried
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.detail


def test_ca_bundle_trusts_a_private_ca(private_ca: PrivateCA) -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)], tls=private_ca.server) as server:
        with RegistryClient(settings(server.url, ca_bundle=str(private_ca.bundle))) as client:
            result = client.list_model_versions("acme", "m")
    assert result.payload == VALID_BODY


def test_a_timed_out_401_is_a_timeout_not_an_auth_failure() -> None:
    slow = Hostile(Reply(401, b"{}"), header_seconds=0.1)
    with ScriptedServer([slow, json_reply(200, VALID_BODY)]) as server:
        overrides = {"timeout_seconds": 0.3, "retry": {"max_attempts": 1}}
        with RegistryClient(settings(server.url, **overrides)) as client:
            with pytest.raises(errors.RetryableError) as caught:
                client.list_model_versions("acme", "a")
            assert client.blocked("acme") is None
            client.list_model_versions("acme", "b")  # the org is not blocked
    assert caught.value.error_type == "timeout"


def test_a_credit_429_is_answered_once_never_retried_and_stops_the_org() -> None:
    credits = envelope(429, "Insufficient credits for org acme", "rate_limit_error")
    credits = Reply(credits.status, credits.body, headers=(("Retry-After", "30"),))
    with ScriptedServer([credits, json_reply(200, VALID_BODY)]) as server:
        with RegistryClient(settings(server.url)) as client:
            started = time.monotonic()
            with pytest.raises(errors.OrgStoppedError) as caught:
                client.list_model_versions("acme", "a")
            with pytest.raises(errors.SkippedError, match="org 'acme' is out of credits"):
                client.list_model_versions("acme", "b")
            client.list_model_versions("globex", "c")  # other orgs go on, unslowed
            elapsed = time.monotonic() - started
    assert [path.split("/")[4] for path in server.paths] == ["acme", "globex"]  # one 429 only
    assert (caught.value.error_type, caught.value.attempts) == ("insufficient_credits", 1)
    assert not isinstance(caught.value, errors.OrgBlockedError)  # not an auth problem
    assert elapsed < 5  # its Retry-After paused no worker: waiting does not bring credits


def test_a_429_without_credit_is_retried_as_a_rate_limit() -> None:
    script = [envelope(429, "Rate limit exceeded", "rate_limit_error"), json_reply(200, VALID_BODY)]
    with ScriptedServer(script) as server:
        with RegistryClient(settings(server.url)) as client:
            result = client.list_model_versions("acme", "a")
    assert result.attempts == 2 and len(server.requests) == 2
