"""Both authentication schemes (Bearer, X-API-Key), the API root from any base-URL form, and
what the config says about them: against real servers that accept one scheme only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import TOKEN, VALID_BODY, ScriptedServer, config_document, envelope, json_reply

from connector import extract
from connector.cli import main
from connector.config import RegistrySettings, parse_config
from connector.credentials import CREDENTIAL_HEADERS, Credential
from connector.errors import ExitCode, OrgBlockedError
from connector.http.client import RegistryClient
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
API_KEY = "dn_key_3f9a1c77-secret-do-not-leak"


def settings(url: str, **overrides: Any) -> RegistrySettings:
    return RegistrySettings.model_validate({"base_url": url, "token": TOKEN, **overrides})


def credential_headers(request: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in request.items() if name in CREDENTIAL_HEADERS}


@pytest.mark.parametrize(
    ("scheme", "sent"),
    [
        (None, {"Authorization": f"Bearer {TOKEN}"}),  # the default, as the reference shows
        ("bearer", {"Authorization": f"Bearer {TOKEN}"}),
        ("api-key", {"X-API-Key": TOKEN}),
    ],
)
def test_each_call_sends_exactly_one_credential_header(
    scheme: str | None, sent: dict[str, str]
) -> None:
    overrides = {} if scheme is None else {"auth_scheme": scheme}
    with ScriptedServer([json_reply(200, VALID_BODY)]) as server:
        with RegistryClient(settings(server.url, **overrides)) as client:
            client.list_model_versions("acme", "m")
            client.list_models("acme", 1, 100)
            client.get_model_version("acme", "m", "1.0.0")
    assert [credential_headers(request) for request in server.requests] == [sent] * 3


def run(registry: SimulatedRegistry, out: Path, **registry_settings: Any) -> Any:
    document = config_document(registry, out, registry_settings=registry_settings)
    return extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)


@pytest.mark.parametrize("accepted", ["bearer", "api-key"])
def test_a_server_taking_one_scheme_only_is_read_with_that_scheme(
    accepted: str, start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3, auth_scheme=accepted)
    summary = run(registry, tmp_path / "out", auth_scheme=accepted)
    assert summary.exit_code == ExitCode.OK, summary.failures
    stats = registry.stats()
    assert stats.by_status == {200: stats.requests}
    bearer, key = stats.authorization_headers_seen, stats.api_key_headers_seen
    if accepted == "api-key":
        assert set(key) == {TOKEN} and set(bearer) == {None}
    else:
        assert set(bearer) == {f"Bearer {TOKEN}"} and set(key) == {None}


@pytest.mark.parametrize(("accepted", "configured"), [("bearer", "api-key"), ("api-key", "bearer")])
def test_a_401_says_which_scheme_was_used_and_that_the_other_exists(
    accepted: str,
    configured: str,
    start_simulator: StartSimulator,
    tmp_path: Path,
    token_env: str,
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3, auth_scheme=accepted)
    summary = run(registry, tmp_path / "out", auth_scheme=configured, concurrency=1)
    assert summary.exit_code == ExitCode.AUTH
    assert registry.stats().requests == 1  # the org is blocked after its first 401
    [refused] = [f for f in summary.failures if f.error_type == "authentication_error"]
    header = "X-API-Key" if configured == "api-key" else "Authorization: Bearer"
    other = "X-API-Key" if accepted == "api-key" else "Authorization"
    assert (
        f"the token was sent as {header} (registry.auth_scheme: {configured}); the registry "
        f"also takes {accepted} ({other}): "
    ) in refused.message
    assert f"set registry.auth_scheme: {accepted}" in refused.message
    assert "\n" not in refused.message and TOKEN not in refused.message


def test_an_org_may_use_the_other_scheme(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(
        orgs=2,
        models_per_org=2,
        org_tokens={"org-01": API_KEY},
        org_auth_schemes={"org-01": "api-key"},
    )
    document = config_document(registry, tmp_path / "out")
    document["orgs"][1].update({"token": API_KEY, "auth_scheme": "api-key"})
    config = parse_config(document)
    assert config.credential_for("org-01") == Credential(API_KEY, "api-key", "orgs[1].auth_scheme")
    assert config.credential_for("org-00") == Credential(TOKEN, "bearer", "registry.auth_scheme")
    assert config.warnings == (
        "orgs[1].token is a literal token in the config file; put it in an environment "
        "variable and write ${VARIABLE_NAME}",
    )
    summary = extract(config, date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.OK, summary.failures
    stats = registry.stats()
    assert set(stats.api_key_headers_seen) == {None, API_KEY}
    assert set(stats.authorization_headers_seen) == {None, f"Bearer {TOKEN}"}


@pytest.mark.parametrize("scheme", ["bearer", "api-key"])
def test_the_org_s_scheme_is_named_in_its_401(scheme: str) -> None:
    other = "api-key" if scheme == "bearer" else "bearer"
    credential = Credential(TOKEN, scheme, "orgs[3].auth_scheme")  # type: ignore[arg-type]
    with ScriptedServer([envelope(401, "Authentication failed", "authentication_error")]) as server:
        with RegistryClient(settings(server.url)) as client:
            with pytest.raises(OrgBlockedError) as caught:
                client.list_model_versions("acme", "m", credential)
    assert caught.value.detail == (f"Authentication failed ({credential.refused_hint()})")
    assert f"set orgs[3].auth_scheme: {other}" in caught.value.detail


@pytest.mark.parametrize("scheme", ["bearer", "api-key"])
def test_no_credential_header_of_either_kind_follows_a_redirect(scheme: str) -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)]) as other:  # another origin: other port
        location = f"{other.url}/api/v1/org/acme/models/m/versions"
        moved = json_reply(302, {}, Location=location)
        with ScriptedServer([moved]) as server:
            with RegistryClient(settings(server.url, auth_scheme=scheme)) as client:
                with pytest.raises(Exception, match="redirect"):
                    client.list_model_versions("acme", "m")
    assert len(credential_headers(server.requests[0])) == 1
    assert other.requests == []  # nothing at all went to the other origin


# --- the API root -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "root"),
    [
        ("", "/api/v1"),
        ("/", "/api/v1"),
        ("/api", "/api/v1"),
        ("/api/", "/api/v1"),
        ("/api/v1", "/api/v1"),
        ("/api/v1/", "/api/v1"),
        ("/registry", "/registry/api/v1"),
        ("/registry/api", "/registry/api/v1"),
        ("/registry/api/v1/", "/registry/api/v1"),
    ],
)
def test_every_base_url_form_means_one_api_root(suffix: str, root: str) -> None:
    with ScriptedServer([json_reply(200, VALID_BODY)]) as server:
        registry = settings(server.url + suffix)
        assert registry.api_root == server.url + root
        with RegistryClient(registry) as client:
            client.list_model_versions("acme", "m")
            client.list_models("acme", 1, 100)
            client.get_model_version("acme", "m", "1.0.0")
    assert [path.split("?")[0] for path in server.paths] == [
        f"{root}/org/acme/models/m/versions",
        f"{root}/org/acme/models",
        f"{root}/org/acme/models/m/1.0.0",
    ]


def test_a_host_named_api_is_not_a_path() -> None:
    assert settings("https://api").api_root == "https://api/api/v1"
    assert settings("https://api:8443/v2").api_root == "https://api:8443/v2/api/v1"


# --- what the config says -----------------------------------------------------------------


def config_text(registry_extra: str = "", org_extra: str = "") -> str:
    return (
        "registry:\n  base_url: https://registry.example.com/api/\n  token: ${T}\n"
        f"{registry_extra}"
        f"orgs:\n  - name: acme\n    models: [a]\n{org_extra}"
        "output:\n  uri: ./data\n"
    )


@pytest.mark.parametrize(
    ("registry_extra", "org_extra", "warned"),
    [
        ("", "", "registry.token looks like an API key (dn_key_...) but registry.auth_scheme"),
        ("  auth_scheme: api-key\n", "", None),
        (
            "  auth_scheme: api-key\n",
            "    auth_scheme: bearer\n",
            "registry.token (org acme) looks like an API key (dn_key_...) but "
            "orgs[0].auth_scheme is bearer",
        ),
    ],
)
def test_validate_warns_of_an_api_key_sent_as_bearer_and_prints_the_api_root(
    registry_extra: str, org_extra: str, warned: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config_text(registry_extra, org_extra))
    result = CliRunner().invoke(main, ["validate", "--config", str(path)], env={"T": API_KEY})
    assert result.exit_code == 0, result.output
    assert "API root https://registry.example.com/api/v1" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    if warned is None:
        assert warnings == []
    else:
        [line] = warnings
        assert line.startswith(f"Warning: {warned}")
        assert "X-API-Key" in line
    assert API_KEY not in result.output


def test_a_bearer_token_that_is_not_an_api_key_is_not_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config_text())
    result = CliRunner().invoke(main, ["validate", "--config", str(path)], env={"T": TOKEN})
    assert result.exit_code == 0 and "Warning" not in result.stderr


def test_an_unknown_scheme_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(config_text("  auth_scheme: basic\n", "    auth_scheme: token\n"))
    result = CliRunner().invoke(main, ["validate", "--config", str(path)], env={"T": TOKEN})
    assert result.exit_code == 2
    assert "registry.auth_scheme: Input should be 'bearer' or 'api-key'" in result.stderr
    assert "orgs[0].auth_scheme: Input should be 'bearer' or 'api-key'" in result.stderr
