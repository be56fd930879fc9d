"""listModels and getModelVersion share the client's one policy: auth, retries, org blocking,
escaping and request counts per operation."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers import TOKEN, VALID_BODY, ScriptedServer, envelope, json_reply

from connector import errors
from connector.config import RegistrySettings
from connector.credentials import Credential
from connector.http.client import RegistryClient
from connector.simulator.faults import Reply

DETAIL = {**VALID_BODY["latest"], "file_size_bytes": 12, "license": "mit"}  # type: ignore[dict-item]


def settings(url: str) -> RegistrySettings:
    retry = {"max_attempts": 3, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.02}
    return RegistrySettings.model_validate(
        {"base_url": url, "token": TOKEN, "timeout_seconds": 5, "retry": retry}
    )


@pytest.mark.parametrize("include_public", [False, True])
def test_list_models_asks_for_one_page_oldest_first_with_the_token(include_public: bool) -> None:
    with ScriptedServer([json_reply(200, {"models": []})]) as server:
        with RegistryClient(settings(server.url)) as client:
            result = client.list_models(
                "acme", 3, 100, Credential("org-token"), include_public=include_public
            )
    assert result.payload == {"models": []}
    split = urlsplit(server.paths[0])
    assert split.path == "/api/v1/org/acme/models"
    assert parse_qs(split.query) == {
        "page": ["3"],
        "limit": ["100"],
        "sort_by": ["created_at"],
        "sort_dir": ["asc"],
        "include_public": ["true" if include_public else "false"],  # always said, never implied
    }
    assert server.requests[0]["Authorization"] == "Bearer org-token"


def test_get_model_version_escapes_the_version_into_one_path_segment() -> None:
    with ScriptedServer([json_reply(200, DETAIL)]) as server:
        with RegistryClient(settings(server.url)) as client:
            result = client.get_model_version("acme", "m", "1.0.0+build..x y?#%2e\\")
            client.get_model_version("acme", "m", "...")  # not a dot segment: a name
    assert result.payload == DETAIL
    assert server.paths == [
        "/api/v1/org/acme/models/m/1.0.0%2Bbuild..x%20y%3F%23%252e%5C",
        "/api/v1/org/acme/models/m/...",
    ]


@pytest.mark.parametrize("version", [".", "..", "", "a/b", "../versions", "/", "1.0/.."])
def test_a_version_that_cannot_be_one_segment_is_refused_never_sent(version: str) -> None:
    """`.../models/m/..` would be the org's listing, `.../m/.` the model itself: a URL
    library normalises both, so the credential would go to another endpoint."""
    with ScriptedServer([json_reply(200, DETAIL)]) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(errors.TargetFailedError) as caught:
                client.get_model_version("acme", "m", version)
            client.get_model_version("acme", "m", "1.0.0")
    assert server.paths == ["/api/v1/org/acme/models/m/1.0.0"]  # only the good one went out
    error = caught.value
    assert (error.org, error.model, error.error_type, error.attempts) == (
        "acme",
        "m",
        "invalid_slug",
        0,
    )
    assert f"version {version!r} cannot be sent as one URL path segment" in error.detail


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.list_models("acme", 1, 100),
        lambda c: c.get_model_version("acme", "m", "1.0.0"),
    ],
)
def test_both_operations_retry_transient_failures(call: Any) -> None:
    reset = Reply(0, reset=True)
    script = [envelope(503, "busy", "service_unavailable"), reset, json_reply(200, {})]
    with ScriptedServer(script) as server, RegistryClient(settings(server.url)) as client:
        result = call(client)
    assert result.attempts == 3
    assert len(server.requests) == 3


def test_a_403_on_the_listing_blocks_the_org_for_every_operation() -> None:
    script = [envelope(403, "no access to acme", "permission_error"), json_reply(200, VALID_BODY)]
    with ScriptedServer(script) as server, RegistryClient(settings(server.url)) as client:
        with pytest.raises(errors.OrgBlockedError) as caught:
            client.list_models("acme", 1, 100)
        assert (caught.value.org, caught.value.model) == ("acme", None)
        assert caught.value.error_type == "permission_error"
        with pytest.raises(errors.SkippedError, match="HTTP 403 on the model listing"):
            client.list_model_versions("acme", "m")
        with pytest.raises(errors.SkippedError):
            client.get_model_version("acme", "m", "1.0.0")
        client.list_model_versions("other", "m")  # another org is not blocked
    assert len(server.requests) == 2


def test_a_401_on_a_detail_blocks_the_org() -> None:
    script = [envelope(401, "token expired", "authentication_error")]
    with ScriptedServer(script) as server, RegistryClient(settings(server.url)) as client:
        with pytest.raises(errors.OrgBlockedError) as caught:
            client.get_model_version("acme", "m", "1.0.0")
        assert caught.value.error_type == "authentication_error"
        with pytest.raises(errors.SkippedError):
            client.list_models("acme", 1, 100)
    assert len(server.requests) == 1


def test_requests_are_counted_per_operation_and_per_status() -> None:
    script = [
        json_reply(200, VALID_BODY),
        json_reply(200, {"models": []}),
        envelope(500, "oops", "internal_server_error"),
        json_reply(200, DETAIL),
        envelope(404, "gone", "not_found_error"),
    ]
    with ScriptedServer(script) as server, RegistryClient(settings(server.url)) as client:
        client.list_model_versions("acme", "m")
        client.list_models("acme", 1, 100)
        client.get_model_version("acme", "m", "1.0.0")
        with pytest.raises(errors.TargetFailedError) as caught:
            client.get_model_version("acme", "m", "0.9.0")
        assert caught.value.error_type == "not_found"
        by_operation = dict(client.requests_by_operation)
        by_status = dict(client.requests_by_status)
    assert by_operation == {"listModelVersions": 1, "listModels": 1, "getModelVersion": 3}
    assert by_status == {"200": 3, "500": 1, "404": 1}
    assert len(server.requests) == 5


@pytest.mark.parametrize("org", ["../etc", "a/b", ""])
def test_invalid_org_slugs_never_reach_the_listing_url(org: str) -> None:
    with ScriptedServer([json_reply(200, {"models": []})]) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(errors.TargetError, match="invalid org slug"):
                client.list_models(org, 1, 100)
    assert server.requests == []
