"""Configuration: `${ENV}` interpolation, validation with key paths, every problem at once,
secrets kept out of every text, and the sample configs kept valid and complete."""

from __future__ import annotations

import copy
import time
import typing
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from connector.config import (
    Config,
    OrgSettings,
    OutputSettings,
    RegistrySettings,
    RetrySettings,
    interpolate,
    load_config,
    parse_config,
)
from connector.config.source import key_path
from connector.errors import ConfigError, ExitCode

SAMPLES = Path(__file__).resolve().parent.parent / "sample_configs"
TOKEN = "sk-live-0123456789abcdef"
GLOBEX = "sk-globex-fedcba9876543210"
ENV = {"MODEL_REGISTRY_TOKEN": TOKEN, "GLOBEX_TOKEN": GLOBEX}
SLUG_MESSAGE = "not a valid slug (letters, digits, '.', '_', '-'; starts alphanumeric)"
UNKNOWN_KEY = "unknown key (check the spelling; see sample_configs/full.yaml)"


def valid_raw() -> dict[str, Any]:
    """A fresh, valid document (as yaml.safe_load would return it) that tests may mutate."""
    return {
        "registry": {
            "base_url": "https://registry.example.com",
            "token": "${MODEL_REGISTRY_TOKEN}",
        },
        "orgs": [
            {"name": "acme", "models": ["sentiment-small", "llama-guard"]},
            {"name": "globex", "token": "${GLOBEX_TOKEN}", "models": ["detector"]},
        ],
        "output": {"uri": "./data"},
    }


def problems_of(raw: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, ENV if env is None else env)
    return caught.value.problems


def with_change(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """valid_raw() with the value at `path` replaced (or added)."""
    raw = valid_raw()
    node: Any = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return raw


def without(path: tuple[str | int, ...]) -> dict[str, Any]:
    raw = valid_raw()
    node: Any = raw
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return raw


# --- defaults and the typed result -------------------------------------------------------------


def test_valid_config_has_documented_defaults() -> None:
    config = parse_config(valid_raw(), ENV)

    registry = config.registry
    assert registry.base_url == "https://registry.example.com"
    assert registry.token.get_secret_value() == TOKEN
    assert registry.timeout_seconds == 30.0
    assert registry.connect_timeout_seconds == 10.0
    assert registry.concurrency == 8
    assert registry.max_requests_per_second is None
    assert registry.max_response_bytes == 16 * 1024 * 1024
    assert registry.ca_bundle is None
    assert registry.retry == RetrySettings(
        max_attempts=6,
        backoff_base_seconds=0.5,
        backoff_max_seconds=30.0,
        max_retry_after_seconds=120.0,
        max_elapsed_seconds=600.0,
    )
    assert config.output == OutputSettings(uri="./data", min_success_ratio=0.9)
    assert config.warnings == ()
    assert config.source is None


def test_default_retry_attempts_are_at_least_five() -> None:
    assert parse_config(valid_raw(), ENV).registry.retry.max_attempts >= 5


def test_every_option_can_be_set() -> None:
    raw = valid_raw()
    raw["registry"].update(
        {
            "timeout_seconds": 12.5,
            "connect_timeout_seconds": 3,
            "concurrency": 32,
            "max_requests_per_second": 7.5,
            "max_response_bytes": 2048,
            "retry": {
                "max_attempts": 9,
                "backoff_base_seconds": 0.25,
                "backoff_max_seconds": 8,
                "max_retry_after_seconds": 0,
                "max_elapsed_seconds": 90,
            },
        }
    )
    raw["output"]["min_success_ratio"] = 0
    config = parse_config(raw, ENV)
    assert (config.registry.timeout_seconds, config.registry.connect_timeout_seconds) == (12.5, 3)
    assert (config.registry.concurrency, config.registry.max_requests_per_second) == (32, 7.5)
    assert config.registry.max_response_bytes == 2048
    assert config.registry.retry == RetrySettings(
        max_attempts=9,
        backoff_base_seconds=0.25,
        backoff_max_seconds=8,
        max_retry_after_seconds=0,
        max_elapsed_seconds=90,
    )
    assert config.output.min_success_ratio == 0.0


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://registry.example.com", "https://registry.example.com"),
        ("https://registry.example.com/", "https://registry.example.com"),
        ("http://127.0.0.1:8080/api/", "http://127.0.0.1:8080/api"),
        ("HTTPS://Registry.Example.com", "HTTPS://Registry.Example.com"),
    ],
)
def test_base_url_is_kept_without_trailing_slash(base_url: str, expected: str) -> None:
    config = parse_config(with_change(("registry", "base_url"), base_url), ENV)
    assert config.registry.base_url == expected


def test_an_org_of_many_models_is_validated_in_linear_time() -> None:
    """Duplicates are counted in one pass: 60,000 models took about 30 s with a count per
    model (quadratic), at every start; one listed twice is still named."""
    models = [f"model-{index:05d}" for index in range(60_000)]
    started = time.monotonic()
    config = parse_config(with_change(("orgs", 1, "models"), models), ENV)
    assert time.monotonic() - started < 5
    assert len(config.orgs[1].models) == 60_000
    assert problems_of(with_change(("orgs", 1, "models"), [*models, "model-00007"])) == [
        "orgs[1].models: listed more than once: model-00007"
    ]


def test_ca_bundle_that_exists_is_accepted(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    config = parse_config(with_change(("registry", "ca_bundle"), str(bundle)), ENV)
    assert config.registry.ca_bundle == bundle


def test_ca_bundle_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    assert problems_of(with_change(("registry", "ca_bundle"), str(missing))) == [
        f"registry.ca_bundle: file not found: {missing}"
    ]


def test_ca_bundle_that_is_a_directory_is_reported(tmp_path: Path) -> None:
    assert problems_of(with_change(("registry", "ca_bundle"), str(tmp_path))) == [
        f"registry.ca_bundle: file not found: {tmp_path}"
    ]


def test_config_is_immutable() -> None:
    config = parse_config(valid_raw(), ENV)
    with pytest.raises(pydantic.ValidationError):
        config.registry.concurrency = 1  # type: ignore[misc]


# --- targets, tokens, secrets --------------------------------------------------------------


def test_targets_are_in_configuration_order() -> None:
    raw = valid_raw()
    raw["orgs"].insert(0, {"name": "zeta", "models": ["b", "a"]})
    assert parse_config(raw, ENV).targets() == [
        ("zeta", "b"),
        ("zeta", "a"),
        ("acme", "sentiment-small"),
        ("acme", "llama-guard"),
        ("globex", "detector"),
    ]


@pytest.mark.parametrize(
    ("org", "expected"),
    [("acme", TOKEN), ("globex", GLOBEX), ("not-configured", TOKEN)],
)
def test_credential_for_uses_the_org_override_else_the_registry_token(
    org: str, expected: str
) -> None:
    assert parse_config(valid_raw(), ENV).credential_for(org).token == expected


def test_secrets_lists_every_token() -> None:
    assert parse_config(valid_raw(), ENV).secrets() == [TOKEN, GLOBEX]


# --- ${ENV} interpolation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-fallback}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("$$", {}, "$"),
        ("cost: $$5", {}, "cost: $5"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("$$$${A}", {"A": "x"}, "$${A}"),
        ("$$${A}", {"A": "x"}, "$x"),
        ("$A and $", {"A": "x"}, "$A and $"),
        ("${A}", {"A": "${B}", "B": "no"}, "${B}"),
    ],
)
def test_interpolate_text(text: str, env: dict[str, str], expected: str) -> None:
    problems: list[str] = []
    assert interpolate(text, env, ("k",), problems) == expected
    assert problems == []


@pytest.mark.parametrize("env", [{}, {"A": ""}], ids=["unset", "empty"])
def test_interpolate_reports_an_unset_variable_with_its_key_path(env: dict[str, str]) -> None:
    problems: list[str] = []
    value = {"orgs": [{"models": ["ok", "${A}"]}]}
    assert interpolate(value, env, (), problems) == {"orgs": [{"models": ["ok", ""]}]}
    assert problems == ["orgs[0].models[1]: environment variable A is not set"]


def test_interpolate_leaves_non_strings_alone() -> None:
    problems: list[str] = []
    value = {"a": 1, "b": 2.5, "c": None, "d": True, "e": [1, "${X}"]}
    assert interpolate(value, {"X": "y"}, (), problems) == {
        "a": 1,
        "b": 2.5,
        "c": None,
        "d": True,
        "e": [1, "y"],
    }
    assert problems == []


def test_interpolated_numbers_are_converted() -> None:
    raw = valid_raw()
    raw["registry"]["concurrency"] = "${CONCURRENCY}"
    raw["registry"]["timeout_seconds"] = "${TIMEOUT:-2.5}"
    config = parse_config(raw, {**ENV, "CONCURRENCY": "16"})
    assert config.registry.concurrency == 16
    assert config.registry.timeout_seconds == 2.5


def test_interpolated_default_and_escape_in_a_whole_config() -> None:
    raw = valid_raw()
    raw["registry"]["base_url"] = "${REGISTRY_URL:-https://registry.example.com/v1}"
    raw["output"]["uri"] = "${OUT:-./data}/$$HOME"
    config = parse_config(raw, ENV)
    assert config.registry.base_url == "https://registry.example.com/v1"
    assert config.output.uri == "./data/$HOME"


def test_environment_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", "from-os-environ")
    monkeypatch.setenv("GLOBEX_TOKEN", "globex-from-os-environ")
    config = parse_config(valid_raw())
    assert config.registry.token.get_secret_value() == "from-os-environ"
    assert config.credential_for("globex").token == "globex-from-os-environ"


def test_unset_variable_is_reported_with_its_key_path() -> None:
    # one problem per key: the unset variable, not also the empty value it leaves behind
    assert problems_of(valid_raw(), {"GLOBEX_TOKEN": GLOBEX}) == [
        "registry.token: environment variable MODEL_REGISTRY_TOKEN is not set",
    ]


def test_unset_variable_deep_in_a_list_is_reported_with_its_key_path() -> None:
    raw = valid_raw()
    raw["orgs"][1]["models"] = ["${FIRST_MODEL}", "detector"]
    # one problem per key: the unset variable explains the empty slug it leaves behind
    assert problems_of(raw) == [
        "orgs[1].models[0]: environment variable FIRST_MODEL is not set",
    ]


# --- one problem each, with its exact key path -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            with_change(("registry", "timeout"), 5),
            f"registry.timeout: {UNKNOWN_KEY}",
            id="unknown-registry-key",
        ),
        pytest.param(
            with_change(("orgs", 1, "modles"), ["x"]),
            f"orgs[1].modles: {UNKNOWN_KEY}",
            id="unknown-org-key",
        ),
        pytest.param(
            with_change(("extras",), {}),
            f"extras: {UNKNOWN_KEY}",
            id="unknown-top-level-key",
        ),
        pytest.param(
            with_change(("registry", "retry"), {"attempts": 3}),
            f"registry.retry.attempts: {UNKNOWN_KEY}",
            id="unknown-retry-key",
        ),
        pytest.param(
            with_change(("registry", "concurrency"), "eight"),
            "registry.concurrency: Input should be a valid integer, "
            "unable to parse string as an integer",
            id="wrong-type-int",
        ),
        pytest.param(
            with_change(("registry", "concurrency"), 2.5),
            "registry.concurrency: Input should be a valid integer, "
            "got a number with a fractional part",
            id="fractional-int",
        ),
        pytest.param(
            with_change(("registry", "concurrency"), True),
            "registry.concurrency: expected a number, got a boolean",
            id="boolean-as-int",
        ),
        pytest.param(
            with_change(("registry", "timeout_seconds"), False),
            "registry.timeout_seconds: expected a number, got a boolean",
            id="boolean-as-float",
        ),
        pytest.param(
            with_change(("registry", "max_requests_per_second"), True),
            "registry.max_requests_per_second: expected a number, got a boolean",
            id="boolean-as-optional-float",
        ),
        pytest.param(
            with_change(("registry", "timeout_seconds"), [30]),
            "registry.timeout_seconds: Input should be a valid number",
            id="wrong-type-float",
        ),
        pytest.param(
            with_change(("orgs", 0, "models"), "sentiment-small"),
            "orgs[0].models: Input should be a valid list",
            id="models-not-a-list",
        ),
        pytest.param(
            with_change(("orgs", 0, "models", 1), 7),
            "orgs[0].models[1]: is a number, not text: put the value in quotes to keep it as "
            "written",
            id="model-not-a-string",
        ),
        pytest.param(
            with_change(("orgs",), {"acme": ["a"]}),
            "orgs: Input should be a valid list",
            id="orgs-not-a-list",
        ),
        pytest.param(
            with_change(("orgs", 0, "models"), []),
            "orgs[0].models: List should have at least 1 item after validation, not 0",
            id="empty-model-list",
        ),
        pytest.param(
            with_change(("orgs",), []),
            "orgs: List should have at least 1 item after validation, not 0",
            id="empty-org-list",
        ),
        pytest.param(
            with_change(("orgs", 1, "models", 0), "-leading-dash"),
            f"orgs[1].models[0]: {SLUG_MESSAGE}",
            id="malformed-model-slug",
        ),
        pytest.param(
            with_change(("orgs", 1, "models", 0), "acme/detector"),
            f"orgs[1].models[0]: {SLUG_MESSAGE}",
            id="model-slug-with-org-prefix",
        ),
        pytest.param(
            with_change(("orgs", 1, "models", 0), "m" * 201),
            f"orgs[1].models[0]: {SLUG_MESSAGE}",
            id="model-slug-too-long",
        ),
        pytest.param(
            with_change(("orgs", 0, "name"), "ac me"),
            f"orgs[0].name: {SLUG_MESSAGE}",
            id="malformed-org-slug",
        ),
        pytest.param(
            with_change(("orgs", 0, "name"), "acme\n"),
            f"orgs[0].name: {SLUG_MESSAGE}",
            id="org-slug-with-trailing-newline",
        ),
        pytest.param(
            with_change(("orgs", 0, "name"), "o" * 101),
            f"orgs[0].name: {SLUG_MESSAGE}",
            id="org-slug-too-long",
        ),
        pytest.param(
            with_change(("registry", "base_url"), "ftp://registry.example.com"),
            "registry.base_url: must be an http:// or https:// URL (not ftp://)",
            id="non-http-url",
        ),
        pytest.param(
            with_change(("registry", "base_url"), "registry.example.com"),
            "registry.base_url: must be an http:// or https:// URL (no scheme given)",
            id="url-without-scheme",
        ),
        pytest.param(
            with_change(("registry", "base_url"), "https://"),
            "registry.base_url: must be an http:// or https:// URL with a host",
            id="url-without-host",
        ),
        pytest.param(
            with_change(("registry", "base_url"), "https://registry.example.com/?x=1"),
            "registry.base_url: must not carry a query string or fragment",
            id="url-with-query",
        ),
        pytest.param(
            with_change(("registry", "base_url"), "https://registry.example.com#top"),
            "registry.base_url: must not carry a query string or fragment",
            id="url-with-fragment",
        ),
        pytest.param(
            with_change(("registry", "base_url"), "https://registry.example.com:http"),
            "registry.base_url: has an invalid port: "
            "Port could not be cast to integer value as 'http'",
            id="url-with-non-numeric-port",
        ),
        pytest.param(
            with_change(("registry", "base_url"), "https://registry.example.com:70000"),
            "registry.base_url: has an invalid port: Port out of range 0-65535",
            id="url-with-port-out-of-range",
        ),
        pytest.param(
            with_change(("registry", "token"), "   "),
            "registry.token: is empty",
            id="blank-registry-token",
        ),
        pytest.param(
            with_change(("orgs", 1, "token"), ""),
            "orgs[1].token: is empty (leave the key out to use registry.token)",
            id="empty-org-token",
        ),
        pytest.param(
            with_change(("orgs", 1, "models"), ["detector", "x", "detector", "x"]),
            "orgs[1].models: listed more than once: detector, x",
            id="duplicate-model",
        ),
        pytest.param(
            with_change(("orgs", 1, "name"), "acme"),
            "orgs: org listed more than once: acme",
            id="duplicate-org",
        ),
        pytest.param(
            with_change(("registry", "concurrency"), 0),
            "registry.concurrency: Input should be greater than or equal to 1",
            id="concurrency-zero",
        ),
        pytest.param(
            with_change(("registry", "concurrency"), 257),
            "registry.concurrency: Input should be less than or equal to 256",
            id="concurrency-too-high",
        ),
        pytest.param(
            with_change(("registry", "timeout_seconds"), 0),
            "registry.timeout_seconds: Input should be greater than 0",
            id="timeout-zero",
        ),
        pytest.param(
            with_change(("registry", "max_requests_per_second"), 0),
            "registry.max_requests_per_second: Input should be greater than 0",
            id="rate-zero",
        ),
        pytest.param(
            with_change(("registry", "max_response_bytes"), 1023),
            "registry.max_response_bytes: Input should be greater than or equal to 1024",
            id="response-cap-too-small",
        ),
        pytest.param(
            with_change(("registry", "memory_budget_bytes"), 1024),
            "registry.memory_budget_bytes: Input should be greater than or equal to 1048576",
            id="memory-budget-too-small",
        ),
        pytest.param(
            with_change(("registry", "retry"), {"max_attempts": 0}),
            "registry.retry.max_attempts: Input should be greater than or equal to 1",
            id="retry-attempts-zero",
        ),
        pytest.param(
            with_change(("registry", "retry"), {"max_attempts": 51}),
            "registry.retry.max_attempts: Input should be less than or equal to 50",
            id="retry-attempts-too-many",
        ),
        pytest.param(
            with_change(("registry", "retry"), {"backoff_base_seconds": 0}),
            "registry.retry.backoff_base_seconds: Input should be greater than 0",
            id="backoff-base-zero",
        ),
        pytest.param(
            with_change(("registry", "retry"), {"backoff_max_seconds": -1}),
            "registry.retry.backoff_max_seconds: Input should be greater than 0",
            id="backoff-max-negative",
        ),
        pytest.param(
            with_change(("registry", "retry"), {"max_retry_after_seconds": -0.5}),
            "registry.retry.max_retry_after_seconds: Input should be greater than or equal to 0",
            id="retry-after-cap-negative",
        ),
        pytest.param(
            with_change(("registry", "retry"), {"max_elapsed_seconds": 0}),
            "registry.retry.max_elapsed_seconds: Input should be greater than 0",
            id="max-elapsed-zero",
        ),
        pytest.param(
            with_change(("output", "min_success_ratio"), 1.5),
            "output.min_success_ratio: Input should be less than or equal to 1",
            id="ratio-above-one",
        ),
        pytest.param(
            with_change(("output", "min_success_ratio"), -0.1),
            "output.min_success_ratio: Input should be greater than or equal to 0",
            id="ratio-below-zero",
        ),
        pytest.param(
            with_change(("output", "uri"), "gs://bucket/prefix"),
            "output.uri: only local paths, file:// and s3:// URIs are supported, got gs://",
            id="uri-unsupported-object-storage",
        ),
        pytest.param(
            with_change(("output", "uri"), "  "),
            "output.uri: is empty",
            id="uri-blank",
        ),
        pytest.param(without(("registry", "base_url")), "registry.base_url: Field required"),
        pytest.param(without(("registry", "token")), "registry.token: Field required"),
        pytest.param(without(("orgs", 0, "models")), "orgs[0].models: Field required"),
        pytest.param(without(("orgs", 1, "name")), "orgs[1].name: Field required"),
        pytest.param(without(("orgs",)), "orgs: Field required"),
        pytest.param(without(("output", "uri")), "output.uri: Field required"),
        pytest.param(without(("output",)), "output: Field required"),
    ],
)
def test_each_problem_is_reported_with_its_key_path(raw: dict[str, Any], expected: str) -> None:
    assert problems_of(raw) == [expected]


@pytest.mark.parametrize(
    "uri", ["./data", "/srv/data", "file:///srv/data", "C:\\data", "relative/dir"]
)
def test_local_output_uris_are_accepted(uri: str) -> None:
    assert parse_config(with_change(("output", "uri"), uri), ENV).output.uri == uri


@pytest.mark.parametrize("raw", [None, [], "registry: x", 3])
def test_a_document_that_is_not_a_mapping_is_reported(raw: Any) -> None:
    assert problems_of(raw) == ["(top level): expected a mapping of settings"]


def test_every_problem_is_reported_at_once() -> None:
    raw = valid_raw()
    raw["registry"]["base_url"] = "ftp://registry.example.com"
    raw["registry"]["concurrency"] = "many"
    raw["registry"]["colour"] = "blue"
    raw["orgs"][0]["models"] = []
    raw["orgs"][1]["name"] = "glo bex"
    raw["orgs"][1]["models"] = ["bad/slug", "${MISSING_MODEL}"]
    raw["output"]["min_success_ratio"] = 2

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, ENV, source="conf.yaml")

    error = caught.value
    assert error.problems == [
        "orgs[1].models[1]: environment variable MISSING_MODEL is not set",
        "registry.base_url: must be an http:// or https:// URL (not ftp://)",
        "registry.concurrency: Input should be a valid integer, unable to parse string as an "
        "integer",
        f"registry.colour: {UNKNOWN_KEY}",
        "orgs[0].models: List should have at least 1 item after validation, not 0",
        f"orgs[1].name: {SLUG_MESSAGE}",
        f"orgs[1].models[0]: {SLUG_MESSAGE}",
        "output.min_success_ratio: Input should be less than or equal to 1",
    ]
    assert error.source == "conf.yaml"
    assert error.exit_code == ExitCode.CONFIG
    assert str(error).splitlines()[0] == "8 configuration problem(s) in conf.yaml:"
    assert str(error).splitlines()[1:] == [f"  {p}" for p in error.problems]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ((), "(top level)"),
        (("registry",), "registry"),
        (("registry", "retry", "max_attempts"), "registry.retry.max_attempts"),
        (("orgs", 1, "models", 0), "orgs[1].models[0]"),
        (("orgs", 0, "name"), "orgs[0].name"),
        (("orgs", 2), "orgs[2]"),
    ],
)
def test_key_path(location: tuple[int | str, ...], expected: str) -> None:
    assert key_path(location) == expected


# --- literal tokens and secrecy ----------------------------------------------------------------

LITERAL_WARNING = (
    "{where} is a literal token in the config file; "
    "put it in an environment variable and write ${{VARIABLE_NAME}}"
)


def test_literal_tokens_produce_warnings() -> None:
    raw = valid_raw()
    raw["registry"]["token"] = TOKEN
    raw["orgs"][1]["token"] = GLOBEX
    config = parse_config(raw, {})
    assert config.warnings == (
        LITERAL_WARNING.format(where="registry.token"),
        LITERAL_WARNING.format(where="orgs[1].token"),
    )
    assert config.credential_for("globex").token == GLOBEX


def test_environment_tokens_produce_no_warning() -> None:
    assert parse_config(valid_raw(), ENV).warnings == ()


def test_token_never_appears_in_repr_or_str() -> None:
    raw = valid_raw()
    raw["orgs"][0]["token"] = "literal-acme-token"
    config = parse_config(raw, ENV)
    for text in (repr(config), str(config), repr(config.registry), str(config.orgs)):
        for secret in (TOKEN, GLOBEX, "literal-acme-token"):
            assert secret not in text
    assert "SecretStr('**********')" in repr(config.registry)


def test_token_never_appears_in_the_config_error() -> None:
    raw = valid_raw()
    raw["registry"]["token"] = TOKEN  # a literal, and everything else wrong around it
    raw["registry"]["concurrency"] = TOKEN
    raw["registry"]["retry"] = TOKEN
    raw["orgs"][1]["token"] = [GLOBEX]
    raw["orgs"][1]["models"] = {GLOBEX: 1}
    raw["output"]["min_success_ratio"] = GLOBEX

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, ENV)

    assert caught.value.problems == [
        "registry.concurrency: Input should be a valid integer, unable to parse string as an "
        "integer",
        "registry.retry: Input should be a valid dictionary or instance of RetrySettings",
        "orgs[1].models: Input should be a valid list",
        "orgs[1].token: Input should be a valid string",
        "output.min_success_ratio: Input should be a valid number, unable to parse string as a "
        "number",
    ]
    text = str(caught.value) + repr(caught.value)
    assert TOKEN not in text
    assert GLOBEX not in text


def test_token_never_appears_in_a_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        f"registry:\n  base_url: https://registry.example.com\n  token: {TOKEN}: oops\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV)
    assert caught.value.problems == [
        "not valid YAML at line 3, column 34: mapping values are not allowed here"
    ]
    assert TOKEN not in str(caught.value)


# --- load_config -------------------------------------------------------------------------------


def test_load_config_reads_a_file_and_records_its_source(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(valid_raw()), encoding="utf-8")
    config = load_config(path, env=ENV)
    assert config.source == str(path)
    assert config.targets()[0] == ("acme", "sentiment-small")


def test_load_config_reports_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV)
    assert caught.value.problems == ["cannot read the file: No such file or directory"]
    assert caught.value.source == str(path)


def test_load_config_reports_an_unterminated_string(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('registry:\n  token: "abc\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV)
    assert caught.value.problems == [
        "not valid YAML at line 3, column 1: while scanning a quoted scalar; "
        "found unexpected end of stream"
    ]


def test_load_config_reports_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=ENV)
    assert caught.value.problems == ["(top level): expected a mapping of settings"]


# --- sample_configs ------------------------------------------------------------------------


SAMPLE_FILES = sorted(SAMPLES.glob("*.yaml"))


def test_sample_configs_exist() -> None:
    assert [p.name for p in SAMPLE_FILES] == ["full.yaml", "minimal.yaml"]


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_config_validates_without_warnings(path: Path) -> None:
    config = load_config(path, env=ENV)
    assert config.warnings == ()
    assert config.registry.base_url == "https://registry.example.com"
    assert config.secrets()[0] == TOKEN


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_configs_hold_no_token(path: Path) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    tokens = [raw["registry"]["token"]] + [o["token"] for o in raw["orgs"] if "token" in o]
    assert set(tokens) <= {"${MODEL_REGISTRY_TOKEN}", "${GLOBEX_TOKEN}"}


def _fields(model: type[pydantic.BaseModel], prefix: str) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        names.add(prefix + name)
        # A nested section, optional or not (`StorageOptions | None`), must show its keys too.
        for annotation in typing.get_args(field.annotation) or (field.annotation,):
            if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
                names |= _fields(annotation, f"{prefix}{name}.")
    return names


def _keys(value: Any, prefix: str) -> set[str]:
    if isinstance(value, list):
        return set().union(*(_keys(item, prefix) for item in value))
    if not isinstance(value, dict):
        return set()
    names = set()
    for key, item in value.items():
        names.add(prefix + key)
        names |= _keys(item, f"{prefix}{key}.")
    return names


def test_full_sample_config_sets_every_option() -> None:
    raw = yaml.safe_load((SAMPLES / "full.yaml").read_text(encoding="utf-8"))
    expected = (
        _fields(Config, "")
        | _fields(RegistrySettings, "registry.")
        | _fields(OrgSettings, "orgs.")
        | _fields(OutputSettings, "output.")
    )
    assert _keys(raw, "") == expected


def test_full_sample_config_shows_the_defaults() -> None:
    config = load_config(SAMPLES / "full.yaml", env=ENV)
    defaults = parse_config(valid_raw(), ENV)
    assert config.registry == defaults.registry
    assert config.output == defaults.output
    assert config.targets() == defaults.targets()
    assert config.credential_for("globex").token == GLOBEX


def test_minimal_sample_config_equals_defaults() -> None:
    raw = copy.deepcopy(yaml.safe_load((SAMPLES / "minimal.yaml").read_text(encoding="utf-8")))
    assert set(raw) == {"registry", "orgs", "output"}
    assert set(raw["registry"]) == {"base_url", "token"}
    assert set(raw["output"]) == {"uri"}
    config = load_config(SAMPLES / "minimal.yaml", env={"MODEL_REGISTRY_TOKEN": TOKEN})
    assert config.registry == parse_config(valid_raw(), ENV).registry


@pytest.mark.parametrize("token", ["abc\r", "abc def", "abc\n", "\tabc", "ab\x00c"])
def test_token_with_whitespace_or_control_characters_is_refused(token: str) -> None:
    raw = valid_raw()
    raw["registry"]["token"] = "${TOKEN_WITH_CR}"
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {**ENV, "TOKEN_WITH_CR": token})
    assert caught.value.problems == [
        "registry.token: contains whitespace or control characters "
        "(a CRLF line ending in an env file?)"
    ]
    assert token not in str(caught.value)


def test_base_url_with_credentials_is_refused_without_echoing_them() -> None:
    raw = valid_raw()
    raw["registry"]["base_url"] = "https://user:hunter2@registry.example.com"
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, ENV)
    assert caught.value.problems == [
        "registry.base_url: must not carry user:password@ (the token authenticates)"
    ]
    assert "hunter2" not in str(caught.value)


def test_non_ascii_token_is_refused() -> None:
    raw = valid_raw()
    raw["registry"]["token"] = "${PASTED}"
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {**ENV, "PASTED": "abc\u2019def"})
    assert caught.value.problems == [
        "registry.token: contains non-ASCII characters (a typographic quote pasted in?)"
    ]


@pytest.mark.parametrize(
    ("proxy", "problem"),
    [
        ("http://", "registry.proxy: must be an http:// or https:// URL with a host"),
        ("http:/proxy:8080", "registry.proxy: must be an http:// or https:// URL with a host"),
        ("socks5://proxy:1080", "registry.proxy: must be an http:// or https:// URL with a host"),
        ("http://proxy:99999", "registry.proxy: has an invalid port: Port out of range 0-65535"),
    ],
)
def test_bad_proxy_is_reported(proxy: str, problem: str) -> None:
    raw = valid_raw()
    raw["registry"]["proxy"] = proxy
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, ENV)
    assert caught.value.problems == [problem]


def test_an_empty_proxy_variable_means_no_proxy() -> None:
    raw = valid_raw()
    raw["registry"]["proxy"] = "${HTTPS_PROXY:-}"
    assert parse_config(raw, ENV).registry.proxy is None
