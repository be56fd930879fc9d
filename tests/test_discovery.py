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
from helpers import TOKEN, ScriptedServer, config_document, envelope, json_reply, write_config

from connector import extract
from connector.cli import main
from connector.config import RegistrySettings, parse_config
from connector.errors import ConfigError, ExitCode, TargetError
from connector.extraction import listing
from connector.extraction.listing import PAGE_LIMIT, list_models
from connector.extraction.plan import plan_targets
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


# --- paging ------------------------------------------------------------------------------


def scripted_listing(pages: list[dict[str, Any]], **org: Any) -> tuple[Any, list[str]]:
    """`list_models` against a server answering `pages` in order (the last one repeats);
    returns the discovery (or the error it raised) and the paths the server saw."""
    settings = RegistrySettings.model_validate({"base_url": "http://x", "token": TOKEN})
    with ScriptedServer([json_reply(200, page) for page in pages]) as server:
        settings = settings.model_copy(update={"base_url": server.url})
        with RegistryClient(settings) as client:
            try:
                found: Any = list_models(client, "acme", **org)
            except TargetError as exc:
                found = exc
    return found, server.paths


def names(*slugs: str) -> list[dict[str, str]]:
    return [{"name": f"acme/{slug}"} for slug in slugs]


def test_every_listed_model_is_found_over_many_pages_in_sorted_order(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=2 * PAGE_LIMIT + 7, empty_models=3)
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    assert result.failures == [] and result.warnings == []
    assert result.targets == [("org-00", m) for m in listed(registry, "org-00")]
    assert len(result.targets) == 2 * PAGE_LIMIT + 7 - 3
    assert result.discovered["org-00"].pages == 3  # has_next is false on the third
    assert registry.stats().by_operation == {"listModels": 3}


def test_a_capped_limit_never_ends_the_listing_while_has_next_says_more(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """The server serves 50 a page whatever `limit` asks, as the registry may: a page of 50
    for a limit of 100 is not the last one while `has_next` says another follows."""
    registry = start_simulator(orgs=1, models_per_org=130, page_cap=50)
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    assert result.failures == [] and result.warnings == []
    assert len(result.targets) == 130
    assert result.targets == [("org-00", m) for m in listed(registry, "org-00")]
    assert registry.stats().by_operation == {"listModels": 3}


@pytest.mark.parametrize(
    "fields",
    [
        lambda page, pages, total: {"has_next": page < pages},
        lambda page, pages, total: {"total_pages": pages},
        lambda page, pages, total: {"total": total},
    ],
    ids=["has_next", "total_pages", "total"],
)
def test_each_paging_field_alone_says_whether_another_page_follows(fields: Any) -> None:
    slugs = [f"m{i}" for i in range(7)]  # three a page, whatever limit says
    pages = [
        {"models": names(*slugs[i : i + 3]), **fields(i // 3 + 1, 3, 7)} for i in range(0, 7, 3)
    ]
    found, paths = scripted_listing(pages)
    assert found.models == tuple(slugs) and found.warnings == ()
    assert len(paths) == 3  # no request after the last page


def test_without_paging_fields_a_short_page_is_the_last() -> None:
    found, paths = scripted_listing([{"models": names("a", "b")}])
    assert (found.models, len(paths)) == (("a", "b"), 1)
    full = {"models": names(*(f"m{i:03d}" for i in range(PAGE_LIMIT)))}
    found, paths = scripted_listing([full, {"models": []}])
    assert (len(found.models), len(paths)) == (PAGE_LIMIT, 2)  # the empty page ends it


def test_a_listing_short_of_its_total_fails_discovery_and_blocks_the_publish(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    """Pages that say total 130 but end after 100: the 30 missing models are unknown, so the
    discovery failed; a snapshot without them is never published."""
    registry = start_simulator(orgs=2, models_per_org=130, page_cap=50)
    out = tmp_path / "out"
    orgs = [{"name": "org-00", "models": ["*"]}, {"name": "org-01", "models": ["model-0001"]}]
    registry.set_faults(FaultPlan(listing_hidden=30))
    summary = extract(parse_config(document(registry, out, *orgs)), allow_backdate=True)
    assert summary.exit_code == ExitCode.NOT_PUBLISHED
    assert not summary.published and not (out / "model_versions").exists()
    assert summary.discovery_failed_orgs == ["org-00"]
    [failure] = [f for f in summary.failures if f.org == "org-00"]
    assert failure.error_type == "listing_incomplete"
    assert failure.detail == (
        "listModels (discovery): listModels ended after 2 page(s) with 100 distinct model(s), "
        "but the registry's total is 130: 30 model(s) were never listed; the org's models are "
        "not all known"
    )
    assert registry.stats().by_operation["listModels"] == 2
    [kept] = (out / "_rejected").rglob("*.json")
    record = json.loads(kept.read_text())
    assert record["request"].startswith("GET /api/v1/org/org-00/models?page=2&limit=100")


def test_models_that_stopped_being_listed_while_paging_are_told_apart() -> None:
    """`total` fell from 6 to 5 between the pages: one model was deleted (or hidden)
    meanwhile; that one is not missing, but a total of 5 with 4 listed still is one short."""
    first = {"models": names("a", "b", "c"), "total": 6, "has_next": True}
    short = {"models": names("d"), "total": 5, "has_next": False}
    failed, _ = scripted_listing([first, short])
    assert failed.error_type == "listing_incomplete"
    assert failed.detail == (
        "listModels ended after 2 page(s) with 4 distinct model(s), but the registry's total "
        "is 5: 1 model(s) were never listed; 1 more stopped being listed while paging (total "
        "fell from 6 to 5: deleted or hidden meanwhile), not counted as missing; the org's "
        "models are not all known"
    )
    complete = {"models": names("d", "e"), "total": 5, "has_next": False}
    found, _ = scripted_listing([first, complete])
    assert found.models == ("a", "b", "c", "d", "e")
    assert found.warnings == (
        "org acme: all 5 listed; 1 more stopped being listed while paging (total fell from 6 "
        "to 5: deleted or hidden meanwhile), not counted as missing",
    )


def test_a_page_adding_no_new_model_ends_the_listing(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """A server ignoring `page` repeats page 1: read twice, not forever; with its `total` it
    is then seen to be short, so the discovery fails instead of giving 100 of 150."""
    registry = start_simulator(orgs=1, models_per_org=PAGE_LIMIT + 50)
    registry.set_faults(FaultPlan(listing_quirk="repeat"))
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    assert registry.stats().by_operation == {"listModels": 2}
    assert [f.error_type for f in result.failures] == ["listing_incomplete"]
    assert "with 100 distinct model(s), but the registry's total is 150" in str(result.failures)
    page = {"models": names(*(f"m{i:03d}" for i in range(PAGE_LIMIT)))}  # no paging fields
    found, paths = scripted_listing([page])
    assert (len(found.models), len(paths)) == (PAGE_LIMIT, 2)


def test_pages_past_the_budget_fail_the_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    endless = iter(range(10**6))

    def pages(count: int, **fields: Any) -> list[dict[str, Any]]:
        return [{"models": names(f"m{next(endless)}"), **fields} for _ in range(count)]

    failed, paths = scripted_listing(pages(10, total_pages=2, has_next=True))
    assert failed.error_type == "listing_unbounded"
    assert len(paths) == 3  # total_pages 2, and one page of slack for models created meanwhile
    assert "past the 3 page(s) its total_pages/total allow" in failed.detail
    failed, paths = scripted_listing(pages(10, total=4, has_next=True))  # a page holds 1
    assert (failed.error_type, len(paths)) == ("listing_unbounded", 5)
    monkeypatch.setattr(listing, "MAX_PAGES", 6)  # the hard cap, when no figure is sent
    failed, paths = scripted_listing(pages(10, has_next=True))
    assert (failed.error_type, len(paths)) == ("listing_unbounded", 6)


@pytest.mark.parametrize("quirk", ["shift", "shuffle"])
def test_overlapping_or_reordered_pages_give_each_model_once_or_fail(
    quirk: str, start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3 * PAGE_LIMIT + 10)
    registry.set_faults(FaultPlan(listing_quirk=quirk))
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    if quirk == "shift":  # a model created at the top during paging: nothing is lost
        assert result.failures == []
        assert [model for _, model in result.targets] == listed(registry, "org-00")
    else:  # pages reordered each time: some models are never listed, and the total says so
        assert [f.error_type for f in result.failures] == ["listing_incomplete"]
        assert result.targets == []


def test_items_is_accepted_as_the_list_key(start_simulator: StartSimulator, tmp_path: Path) -> None:
    registry = start_simulator(orgs=1, models_per_org=5, models_key="items")
    result = plan(registry, tmp_path, {"name": "org-00", "models": ["*"]})
    assert [m for _, m in result.targets] == listed(registry, "org-00")


def test_unusable_names_are_one_bounded_warning_and_a_bad_body_fails() -> None:
    junk = [{"name": "other/../x"}, {"id": 1}, {"name": "acme/-bad"}]
    junk += [{"name": f"acme/bad slug {i}"} for i in range(1197)]
    page = {"models": [*names("good"), *junk, *junk, "acme/plain", "plain"]}  # each twice
    found, paths = scripted_listing([page])
    assert found.models == ("good", "plain") and len(paths) == 2  # page 2 repeats: the end
    [warning] = found.warnings
    # 1,199 distinct unusable names, counted once; the entry without a name is counted each
    # time it is listed (twice a page, on two pages): nothing tells two of them apart.
    assert warning.startswith("org acme: listModels listed 1203 entry(ies) with no usable model")
    assert warning.endswith(" and 1198 more") and "page 1 [1] 'other/../x'" in warning
    assert len(warning) < 600  # a count and five examples, whatever the page holds
    failed, _ = scripted_listing([{"data": []}])
    assert "no `models` (or `items`) list" in str(failed)
    failed, _ = scripted_listing([{"models": [], "has_next": "yes"}])
    assert "has_next is a str, not a boolean" in str(failed)


@pytest.mark.parametrize("include_public", [False, True])
def test_other_orgs_public_models_are_counted_never_fetched_as_the_org_s(
    include_public: bool, start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=3, models_per_org=8)
    org = {"name": "org-00", "models": ["*"], "include_public": include_public}
    result = plan(registry, tmp_path, org)
    assert result.failures == []  # the total counts them, and so does the listing
    assert [model for _, model in result.targets] == listed(registry, "org-00")
    assert all(o == "org-00" for o, _ in result.targets)
    if include_public:
        [warning] = result.warnings
        assert "model(s) of other orgs (public models), not fetched as org-00's" in warning
    else:
        assert result.warnings == []


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


def test_a_retried_listing_page_is_named_in_the_retry_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    busy = envelope(503, "busy", "service_unavailable")
    settings = RegistrySettings.model_validate(
        {"base_url": "http://x", "token": TOKEN, "retry": {"backoff_base_seconds": 0.01}}
    )
    with ScriptedServer([busy, json_reply(200, {"models": names("a")})]) as server:
        settings = settings.model_copy(update={"base_url": server.url})
        with RegistryClient(settings) as client, caplog.at_level("WARNING", logger="connector"):
            found = list_models(client, "acme")
    assert found.models == ("a",)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert line.startswith("retrying listModels acme/* (page 1) in ")
    assert "after attempt 1: acme: HTTP 503 server_error (server: service_unavailable): busy" in (
        line
    )
    assert "None" not in line


def test_an_entry_whose_name_nests_deeply_is_one_more_unusable_entry() -> None:
    deep: Any = "x"
    for _ in range(900):  # as deep as json.loads goes
        deep = [deep]
    found, _ = scripted_listing([{"models": [{"name": deep}, *names("a")], "total": 2}])
    assert found.models == ("a",)
    assert "page 1 [0] (a list as name)" in found.warnings[0]
