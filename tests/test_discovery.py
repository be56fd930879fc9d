"""Discovery through listModels: patterns, exclude, paging rules, failures, and the run and
`connector targets` built on it, against the simulated registry on a real socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ground_truth import dataset_rows, expected, project
from helpers import TOKEN, ScriptedServer, config_document, json_reply, write_config

from connector import extract
from connector.cli import main
from connector.config import RegistrySettings, parse_config
from connector.errors import ConfigError, ExitCode
from connector.extraction.plan import PAGE_LIMIT, list_models, plan_targets
from connector.http.client import RegistryClient
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]


def document(registry: SimulatedRegistry, out: Path, *orgs: dict[str, Any]) -> dict[str, Any]:
    return config_document(registry, out, orgs=list(orgs) or None)


def listed(registry: SimulatedRegistry, org: str) -> list[str]:
    """What a correct discovery finds: the org's models that have versions (the simulator
    lists no model without a summary to give)."""
    return sorted(
        model
        for o, model in registry.targets()
        if o == org and registry.expected_payload(o, model)["latest"]
    )


def plan(registry: SimulatedRegistry, tmp_path: Path, *orgs: dict[str, Any]) -> Any:
    config = parse_config(
        document(registry, tmp_path / "out", *orgs), env={"MODEL_REGISTRY_TOKEN": TOKEN}
    )
    with RegistryClient(config.registry) as client:
        return plan_targets(config, client)


# --- configuration ------------------------------------------------------------------------


def base(models: list[Any], **org: Any) -> dict[str, Any]:
    return {
        "registry": {"base_url": "http://127.0.0.1:1", "token": "t"},
        "orgs": [{"name": "acme", "models": models, **org}],
        "output": {"uri": "./data"},
    }


@pytest.mark.parametrize("models", [["*"], ["bert-*", "exact"], ["m?", "m[0-9]", "m[!x]*"]])
def test_glob_patterns_are_valid_model_entries(models: list[str]) -> None:
    config = parse_config(base(models))
    assert config.orgs[0].patterns == [m for m in models if m != "exact"]
    assert config.targets() == [("acme", m) for m in models if m == "exact"]


@pytest.mark.parametrize(
    "entry,problem",
    [
        ("acme/*", "orgs[0].models[0]: not a valid pattern: slug characters and the wildcards"),
        ("m[0-9", "orgs[0].models[0]: not a valid pattern: every [ must close with ]"),
        ("m[]*", "orgs[0].models[0]: not a valid pattern: every [ must close with ]"),
        ("a!*", "orgs[0].models[0]: not a valid pattern: every [ must close with ]"),
        ("-x", "orgs[0].models[0]: not a valid slug"),
    ],
)
def test_validate_checks_the_patterns(entry: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(base([entry]))
    assert [p for p in caught.value.problems if p.startswith(problem)], caught.value.problems
    config = write_config(tmp_path / "c.yaml", base([entry]))
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2 and problem in result.output


def test_exclude_needs_a_pattern_and_must_not_contradict_an_exact_slug() -> None:
    with pytest.raises(ConfigError, match=r"orgs\[0\]: .*exclude: only removes models discovered"):
        parse_config(base(["a"], exclude=["a*"]))
    with pytest.raises(ConfigError, match=r"exclude: matches keep-me, which models names exactly"):
        parse_config(base(["*", "keep-me"], exclude=["keep-*"]))
    with pytest.raises(ConfigError, match=r"orgs\[0\]\.exclude\[0\]: not a valid pattern"):
        parse_config(base(["*"], exclude=["x["]))


def test_validate_counts_patterns_without_calling_anything(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", base(["*", "exact"]))
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "1 model(s) and 1 pattern(s) resolved by listModels at run time" in result.stdout


# --- paging -------------------------------------------------------------------------------


def test_every_listed_model_is_found_over_many_pages_in_sorted_order(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=2 * PAGE_LIMIT + 7, empty_models=3)
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    assert result.failures == [] and result.warnings == []
    assert result.targets == [("org-00", m) for m in listed(registry, "org-00")]
    assert len(result.targets) == 2 * PAGE_LIMIT + 7 - 3
    assert result.discovered["org-00"].pages == 3  # the third page is short: the last
    assert registry.stats().by_operation == {"listModels": 3}


def test_a_full_last_page_ends_at_the_empty_page_after_it(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=PAGE_LIMIT)
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    assert len(result.targets) == PAGE_LIMIT
    assert registry.stats().by_operation == {"listModels": 2}


@pytest.mark.parametrize("quirk", ["shift", "shuffle"])
def test_overlapping_or_reordered_pages_give_each_model_once(
    quirk: str, start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3 * PAGE_LIMIT + 10)
    registry.set_faults(FaultPlan(listing_quirk=quirk))
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    models = [model for _, model in result.targets]
    assert models == sorted(set(models))  # sorted, each once
    assert set(models) <= set(listed(registry, "org-00"))
    if quirk == "shift":  # a model created at the top during paging: nothing is lost
        assert models == listed(registry, "org-00")


def test_a_server_ignoring_page_is_read_once_not_forever(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=PAGE_LIMIT + 50)
    registry.set_faults(FaultPlan(listing_quirk="repeat"))
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    assert len(result.targets) == PAGE_LIMIT
    assert registry.stats().by_operation == {"listModels": 2}  # page 2 repeated page 1: stop


def test_items_is_accepted_as_the_list_key(start_simulator: StartSimulator, tmp_path: Path) -> None:
    registry = start_simulator(orgs=1, models_per_org=5, models_key="items")
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    assert [m for _, m in result.targets] == listed(registry, "org-00")


def test_unusable_names_are_skipped_with_a_warning_and_a_bad_body_fails() -> None:
    page = {"models": [{"name": "acme/good"}, {"name": "other/../x"}, {"id": 1}, "acme/plain"]}
    settings = RegistrySettings.model_validate({"base_url": "http://x", "token": TOKEN})
    with ScriptedServer([json_reply(200, page)]) as server:
        settings = settings.model_copy(update={"base_url": server.url})
        with RegistryClient(settings) as client:
            discovery = list_models(client, "acme")
    assert discovery.models == ("good", "plain")
    assert len(discovery.warnings) == 2 and "models[1]" in discovery.warnings[0]
    with ScriptedServer([json_reply(200, {"data": []})]) as server:
        settings = settings.model_copy(update={"base_url": server.url})
        with RegistryClient(settings) as client, pytest.raises(Exception) as caught:
            list_models(client, "acme")
    assert "no `models` (or `items`) list" in str(caught.value)


# --- matching -----------------------------------------------------------------------------


def test_patterns_exclude_and_exact_slugs_make_one_sorted_list(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=12)
    result = plan(
        registry,
        tmp_path,
        {
            "name": "org-00",
            "models": ["model-000?", "model-0011", "ghost"],
            "exclude": ["*000[13]"],
        },
        {"name": "org-01", "models": ["model-0002", "model-0001"]},
    )
    assert result.targets == [
        ("org-00", "ghost"),  # named exactly: fetched although nobody lists it (a 404 then)
        ("org-00", "model-0000"),
        ("org-00", "model-0002"),
        *[("org-00", f"model-000{i}") for i in range(4, 10)],
        ("org-00", "model-0011"),
        ("org-01", "model-0001"),
        ("org-01", "model-0002"),
    ]
    assert registry.stats().by_operation == {"listModels": 1}  # org-01 has no pattern


def test_a_pattern_matching_nothing_is_a_warning(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3)
    orgs = {"name": "org-00", "models": ["model-0000", "bert-*"]}
    summary = extract(parse_config(document(registry, tmp_path / "out", orgs)), allow_backdate=True)
    assert summary.exit_code == ExitCode.OK
    warning = "org org-00: pattern 'bert-*' matches none of the 3 listed model(s)"
    assert warning in summary.warnings
    assert f"warning   {warning}" in summary.render_text()
    manifest = json.loads(Path(summary.partition or "", "_manifest.json").read_text())
    assert manifest["warnings"] == summary.warnings


# --- the run ------------------------------------------------------------------------------


def test_star_with_detail_gives_every_listed_model_with_true_counts(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=7, versions_shape="strings", empty_models=2)
    out = tmp_path / "out"
    config = parse_config(
        document(
            registry, out, {"name": "org-00", "models": ["*"]}, {"name": "org-01", "models": ["*"]}
        )
    )
    summary = extract(config, date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.OK, summary.failures
    assert project(dataset_rows(out)) == project(expected(registry, 1))
    assert all(row["download_count"] is not None for row in dataset_rows(out))
    assert summary.requests_by_operation["listModels"] == 2


@pytest.mark.parametrize("status,exit_code", [(500, ExitCode.NOT_PUBLISHED), (403, ExitCode.AUTH)])
def test_a_failed_listing_fails_the_org_as_a_whole_and_publishes_nothing(
    status: int,
    exit_code: ExitCode,
    start_simulator: StartSimulator,
    tmp_path: Path,
    token_env: str,
) -> None:
    registry = start_simulator(orgs=3, models_per_org=10)
    out = tmp_path / "out"
    orgs = [{"name": o, "models": ["*"]} for o in ("org-00", "org-01", "org-02")]
    config = parse_config(document(registry, out, *orgs))
    assert extract(config, date(2026, 1, 1), allow_backdate=True).exit_code == ExitCode.OK
    before = sorted(p.read_bytes() for p in out.rglob("model_versions/**/*") if p.is_file())

    if status == 403:
        registry.set_faults(FaultPlan(forbidden_orgs=frozenset({"org-01"})))
    else:
        registry.set_faults(FaultPlan(listing_status={"org-01": status}))
    summary = extract(config, date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == exit_code
    assert not summary.published
    assert summary.discovery_failed_orgs == ["org-01"]
    [failure] = [f for f in summary.failures if f.org == "org-01"]
    assert (failure.model, failure.status) == ("*", status)
    assert failure.detail.startswith("listModels (discovery): ")
    assert failure.attempts == (5 if status == 500 else 1)
    assert summary.targets_attempted == 21 and summary.targets_succeeded == 20
    assert "discovery failed for org(s) org-01" in (summary.message or "")
    after = sorted(p.read_bytes() for p in out.rglob("model_versions/**/*") if p.is_file())
    assert after == before  # the good snapshot stays byte-identical


def test_a_403_on_the_listing_blocks_the_org_s_named_models_too(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    registry.set_faults(FaultPlan(forbidden_orgs=frozenset({"org-01"})))
    orgs = [{"name": "org-00", "models": ["*"]}, {"name": "org-01", "models": ["*", "model-0001"]}]
    document_ = document(registry, tmp_path / "out", *orgs)
    document_["output"]["min_success_ratio"] = 0
    summary = extract(parse_config(document_), date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.AUTH and summary.published
    errors = {(f.model, f.error_type) for f in summary.failures}
    assert errors == {("*", "permission_error"), ("model-0001", "skipped")}
    assert registry.stats().by_operation.get("listModelVersions") == 3  # org-00's only


def test_a_model_deleted_from_the_registry_is_not_half_a_config(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    """The half-config guard asks whether the config still covers a published model; a model
    the registry stopped listing is covered by `*`, so the next run publishes without it."""
    registry = start_simulator(orgs=1, models_per_org=4)
    out = tmp_path / "out"
    config = parse_config(document(registry, out, {"name": "org-00", "models": ["*"]}))
    assert extract(config, date(2026, 1, 1), allow_backdate=True).exit_code == ExitCode.OK
    narrowed = parse_config(
        document(registry, out, {"name": "org-00", "models": ["model-000[12]"]})
    )
    refused = extract(narrowed, date(2026, 1, 1), allow_backdate=True)
    assert refused.exit_code == ExitCode.NOT_PUBLISHED
    assert refused.missing_targets == ["org-00/model-0000", "org-00/model-0003"]


# --- connector targets --------------------------------------------------------------------


def test_targets_command_prints_the_resolved_list_calling_only_list_models(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=4)
    orgs = [
        {"name": "org-00", "models": ["*"], "exclude": ["model-0002"]},
        {"name": "org-01", "models": ["model-0003"]},
    ]
    config = write_config(tmp_path / "c.yaml", document(registry, tmp_path / "out", *orgs))
    result = CliRunner().invoke(main, ["targets", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "org-00/model-0000",
        "org-00/model-0001",
        "org-00/model-0003",
        "org-01/model-0003",
    ]
    assert "4 target(s): 1 named, 3 discovered (org-00: 4 listed in 1 page(s))" in result.stderr
    assert registry.stats().by_operation == {"listModels": 1}
    assert not (tmp_path / "out").exists()
    as_json = CliRunner().invoke(main, ["targets", "--config", str(config), "--format", "json"])
    document_ = json.loads(as_json.stdout)
    assert document_["targets"][-1] == {"org": "org-01", "model": "model-0003", "source": "named"}
    assert document_["discovered"] == {"org-00": {"listed": 4, "pages": 1}}


def test_targets_command_exits_3_when_a_listing_fails(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=2)
    registry.set_faults(FaultPlan(listing_status={"org-00": 502}))
    config = write_config(
        tmp_path / "c.yaml",
        document(registry, tmp_path / "out", {"name": "org-00", "models": ["*", "model-0001"]}),
    )
    result = CliRunner().invoke(main, ["targets", "--config", str(config)])
    assert result.exit_code == 3
    assert result.stdout.splitlines() == ["org-00/model-0001"]
    assert "Error: org-00/*: HTTP 502" in result.stderr
    assert TOKEN not in result.output
