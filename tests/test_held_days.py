"""Checks before every publish, end to end against the simulated registry: a config mistake or a
registry incident the checks name is held (exit 10), never published and never lost; the held
day is published as observed by `accept`, on each store and on every publish path."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from held_runs import DROPPED_ORG, config_for, failing, held_data, held_manifest
from helpers import (
    ScriptedServer,
    config_document,
    json_reply,
    prom_key,
    prom_samples,
    run_docs_duckdb,
    write_config,
)
from s3_objects import DAY1, DAY2, ENV
from shard_runs import extract_shard, publish
from stores import parquet_rows, tree

from connector import accept, extract, load_snapshots, report
from connector.cli import main
from connector.config import parse_config
from connector.dataset import partition
from connector.dataset.layout import DATA_NAME, held_path, partition_path
from connector.dataset.locate import open_store
from connector.dataset.reader import read_manifest
from connector.dataset.store import Store
from connector.errors import ExitCode, OutputError
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]


def test_a_config_that_drops_an_org_is_held_and_accepted_byte_for_byte(
    start_simulator: StartSimulator, store: Store
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="objects")
    assert extract(config_for(registry, store), DAY1, allow_backdate=True).exit_code == 0
    published = tree(store, "model_versions")
    registry.set_day(2)
    narrowed = config_for(registry, store, drop_org=DROPPED_ORG)
    summary = extract(narrowed, DAY2, allow_backdate=True)

    assert summary.exit_code == ExitCode.HELD and not summary.published
    assert failing(summary.checks) == ["coverage_config", "row_count"]
    assert summary.held == store.display(held_path(DAY2, summary.run_id))
    assert "a check held the snapshot of 2026-01-02 (coverage_config 3 > 0, row_count" in (
        summary.message or ""
    )
    assert "FAILED CHECK coverage_config 3 > 0" in summary.render_text()
    assert tree(store, "model_versions") == published  # byte for byte, and no 2026-01-02
    held = tree(store, "_held")
    data = held_data(DAY2, summary.run_id)
    assert sorted(held) == [f"{held_path(DAY2, summary.run_id)}/_manifest.json", data]
    observed = parquet_rows(store, data)
    assert set(observed.column("org").to_pylist()) == {"org-00"}
    assert held_manifest(store, DAY2, summary.run_id)["checks"] == summary.checks
    assert tree(store, "_staging") == {} and tree(store, "_shards") == {}

    accepted = accept(narrowed, DAY2, reason="org-01 moved to another registry")
    assert accepted.exit_code == ExitCode.OK and accepted.published
    assert store.get(f"{partition_path(DAY2)}/{DATA_NAME}", limit=1 << 30) == held[data]
    assert tree(store, "_held") == {}
    manifest = read_manifest(store, DAY2)
    assert manifest is not None and manifest["run_id"] == summary.run_id  # the observing run
    checks = manifest["checks"]
    assert checks["verdict"] == "overridden"
    assert failing(checks) == ["coverage_config", "row_count"]
    override = checks["override"]
    assert override["reason"] == "org-01 moved to another registry"
    assert override["run_id"] == accepted.run_id and override["by"] and override["host"]
    record = json.loads(store.get(f"_runs/2026-01-02/{accepted.run_id}.json") or b"")
    assert record["outcome"] == "accepted" and record["checks"]["verdict"] == "overridden"


def _versions_with_counts(registry: SimulatedRegistry) -> list[str]:
    """Every version of day 1 with a count above 0 on day 2, as `org/model/version`."""
    return [
        f"{row['org']}/{row['model']}/{row['version']}"
        for row in registry.expected_rows(1)
        if registry.download_count(row["org"], row["model"], row["version"], 2)
    ]


@pytest.mark.parametrize(("share", "held"), [(0.03, True), (0.005, False)])
def test_counters_reset_to_zero_hold_the_day_beyond_one_percent(
    start_simulator: StartSimulator, tmp_path: Path, share: float, held: bool
) -> None:
    registry = start_simulator(orgs=4, models_per_org=25, versions_shape="objects")
    store = open_store(str(tmp_path / "out"))
    config = config_for(registry, store)
    assert extract(config, DAY1, allow_backdate=True).exit_code == 0
    both = len(registry.expected_rows(1))
    assert both >= 200  # enough versions for 0.5% to be at least one
    reset = (math.ceil if held else math.floor)(share * both)
    registry.set_faults(
        FaultPlan(download_counts=dict.fromkeys(_versions_with_counts(registry)[:reset], 0))
    )
    registry.set_day(2)
    summary = extract(config, DAY2, allow_backdate=True)

    value = round(reset / both, 6)
    counts = next(r for r in (summary.checks or {})["results"] if r["name"] == "counts_decreased")
    assert (counts["value"], counts["threshold"]) == (value, 0.01)
    if held:
        assert summary.exit_code == ExitCode.HELD
        assert failing(summary.checks) == ["counts_decreased"]
        assert read_manifest(store, DAY2) is None
        assert held_manifest(store, DAY2, summary.run_id)["checks"]["verdict"] == "held"
    else:
        assert summary.exit_code == ExitCode.OK and summary.published
        manifest = read_manifest(store, DAY2)
        assert manifest is not None and manifest["checks"] == summary.checks
        assert manifest["checks"]["verdict"] == "passed"
        assert counts["verdict"] == "pass" and counts["value"] > 0


LISTINGS = {
    "an empty list": {"models": [], "total": 0, "page": 1, "limit": 100},
    "only unusable entries": {
        "models": [{"name": "../etc"}, {"name": None}, "two words", {"id": 3}],
        "total": 4,
        "page": 1,
        "limit": 100,
    },
}


@pytest.mark.parametrize("listing", sorted(LISTINGS))
@pytest.mark.parametrize("day", [DAY1, DAY2], ids=["a re-run", "a new day"])
def test_a_discovery_that_finds_nothing_never_publishes_an_empty_snapshot(
    start_simulator: StartSimulator, tmp_path: Path, listing: str, day: date
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    out = tmp_path / "out"
    everything = [{"name": "org-00", "models": ["*"]}, {"name": "org-01", "models": ["*"]}]
    first = parse_config(config_document(registry, out, orgs=everything), ENV)
    assert extract(first, DAY1, allow_backdate=True).exit_code == 0
    before = tree(open_store(str(out)), "model_versions")
    with ScriptedServer([json_reply(200, LISTINGS[listing])]) as server:
        document = config_document(registry, out, orgs=everything)
        document["registry"]["base_url"] = server.url
        summary = extract(parse_config(document, ENV), day, allow_backdate=True)
    assert summary.targets_attempted == 0
    assert summary.exit_code == ExitCode.HELD, summary.message
    assert failing(summary.checks) == (
        ["empty"] if day == DAY1 else ["coverage_registry", "row_count", "empty"]
    )
    assert tree(open_store(str(out)), "model_versions") == before


def test_processes_hold_the_day_and_clear_their_parts(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=4)
    store = open_store(str(tmp_path / "out"))
    assert (
        extract(config_for(registry, store), DAY1, allow_backdate=True, processes=2).exit_code == 0
    )
    narrowed = config_for(registry, store, drop_org=DROPPED_ORG)
    summary = extract(narrowed, DAY2, allow_backdate=True, processes=2)
    assert summary.exit_code == ExitCode.HELD and summary.shards == 2
    assert failing(summary.checks) == ["coverage_config", "row_count"]
    assert store.info(held_data(DAY2, summary.run_id)) is not None
    assert tree(store, "_shards") == {} and tree(store, "_staging") == {}
    assert read_manifest(store, DAY2) is None


def test_publish_of_shards_holds_the_day_through_the_cli(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=4)
    out = tmp_path / "out"
    store = open_store(str(out))
    full = write_config(tmp_path / "full.yaml", config_document(registry, out))
    for index in (1, 2):
        assert extract_shard(full, f"{index}/2").exit_code == 0
    assert publish(full, 2).exit_code == 0
    document = config_document(registry, out)
    document["orgs"] = [org for org in document["orgs"] if org["name"] != DROPPED_ORG]
    narrowed = write_config(tmp_path / "narrowed.yaml", document)
    for index in (1, 2):
        assert extract_shard(narrowed, f"{index}/2", day="2026-01-02").exit_code == 0
    metrics = tmp_path / "publish.prom"
    result = publish(
        narrowed, 2, "--summary-format", "json", "--metrics-file", str(metrics), day="2026-01-02"
    )
    assert result.exit_code == ExitCode.HELD, result.output
    summary = json.loads(result.stdout)
    assert (summary["outcome"], summary["exit_code"], summary["shards"]) == ("held", 10, 2)
    assert summary["held"] == store.display(held_path(DAY2, summary["run_id"]))
    assert failing(summary["checks"]) == ["coverage_config", "row_count"]
    assert tree(store, "_shards") == {}  # the parts are in the held day now
    samples = prom_samples(metrics.read_text(encoding="utf-8"))
    output = {"output": str(out)}
    assert samples[prom_key("held", **output)] == 1
    assert samples[prom_key("last_exit_code", **output)] == 10
    assert samples[prom_key("check_failed", **output, check="coverage_config")] == 1
    assert samples[prom_key("check_value", **output, check="coverage_config")] == 4
    assert samples[prom_key("check_threshold", **output, check="coverage_config")] == 0
    assert samples[prom_key("check_failed", **output, check="counts_decreased")] == 0
    again = publish(narrowed, 2, day="2026-01-02")  # a retried task: the parts are held now
    assert again.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert f"the day is held (run {summary['run_id']})" in again.stderr
    assert "`connector accept` or `connector discard`" in again.stderr
    accepted = CliRunner().invoke(
        main, ["accept", "--config", str(narrowed), "--date", "2026-01-02"]
    )
    assert accepted.exit_code == 0, accepted.output
    assert "checks    overridden (against 2026-01-01)" in accepted.stdout


def _failing_moves(message: str) -> Callable[..., None]:
    def move(*_: object) -> None:
        raise OutputError(message)

    return move


def test_a_hold_that_cannot_move_the_day_keeps_it_for_the_next_run(
    start_simulator: StartSimulator, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    assert extract(config_for(registry, store), DAY1, allow_backdate=True).exit_code == 0
    published = tree(store, "model_versions")
    narrowed = config_for(registry, store, drop_org=DROPPED_ORG)
    with monkeypatch.context() as patch:
        patch.setattr(type(store), "move", _failing_moves("No space left on device"))
        summary = extract(narrowed, DAY2, allow_backdate=True)
    assert summary.exit_code == ExitCode.OUTPUT
    assert "moving it to" in (summary.message or "") and "No space left on device" in (
        summary.message or ""
    )
    assert f"it is kept in {store.display(f'_staging/{summary.run_id}')}" in (summary.message or "")
    assert failing(summary.checks) == ["coverage_config", "row_count"]
    staged = tree(store, "_staging")
    assert sorted(staged) == [
        f"_staging/{summary.run_id}/hold.json",
        f"_staging/{summary.run_id}/{DATA_NAME}",
    ]
    assert tree(store, "model_versions") == published
    assert tree(store, "_shards") != {}  # the parts are still staged too

    # the next run that takes the lock moves the day before it removes anything
    actions = partition.recover(store)
    assert actions[0] == (
        f"moved the held snapshot of 2026-01-02 to {store.display(held_path(DAY2, summary.run_id))}"
    )
    assert tree(store, "_staging") == {}
    data = held_data(DAY2, summary.run_id)
    assert tree(store, "_held")[data] == staged[f"_staging/{summary.run_id}/{DATA_NAME}"]
    assert held_manifest(store, DAY2, summary.run_id)["checks"]["verdict"] == "held"


def test_recover_and_later_runs_never_touch_held_days(
    start_simulator: StartSimulator, store: Store
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    assert extract(config_for(registry, store), DAY1, allow_backdate=True).exit_code == 0
    held = extract(config_for(registry, store, drop_org=DROPPED_ORG), DAY2, allow_backdate=True)
    assert held.exit_code == ExitCode.HELD
    kept = tree(store, "_held")
    partition.recover(store)
    again = extract(config_for(registry, store), DAY2, allow_backdate=True)  # the full config
    assert again.exit_code == ExitCode.OK
    assert tree(store, "_held") == kept  # still waiting for a decision


def test_a_hold_journal_that_is_not_one_stops_the_run_and_deletes_nothing(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=2)
    store = open_store(str(tmp_path / "out"))
    store.put(f"_staging/abc/{DATA_NAME}", b"the observation")
    for day in ("2026-02-30", "2026-01-02"):  # not a day; not this directory's run
        store.put("_staging/abc/hold.json", json.dumps({"day": day, "run_id": "x"}).encode())
        with pytest.raises(OutputError, match=r"the hold journal .* is not of the expected shape"):
            extract(config_for(registry, store), DAY1, allow_backdate=True)
        assert tree(store, "_staging")[f"_staging/abc/{DATA_NAME}"] == b"the observation"


def _checks_of(summary: Any) -> dict[str, Any]:
    return {result["name"]: result for result in summary.checks["results"]}


def test_a_switched_off_check_lets_the_day_publish_and_says_so(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    store = open_store(str(tmp_path / "out"))
    first = extract(config_for(registry, store), DAY1, allow_backdate=True)
    assert first.exit_code == 0
    assert {name: check["verdict"] for name, check in _checks_of(first).items()} == {
        "coverage_config": "skipped",  # the first day checks what it can
        "coverage_registry": "skipped",
        "row_count": "skipped",
        "counts_decreased": "skipped",
        "counts_lost": "skipped",
        "empty": "pass",
        "duplicates": "pass",
    }
    relaxed = config_for(
        registry,
        store,
        drop_org=DROPPED_ORG,
        checks={"disabled": ["coverage_config"], "row_count_max_decrease": 0.6},
    )
    summary = extract(relaxed, DAY2, allow_backdate=True)
    assert summary.exit_code == ExitCode.OK and summary.published
    checks = _checks_of(summary)
    assert (checks["coverage_config"]["verdict"], checks["coverage_config"]["value"]) == ("off", 3)
    assert checks["row_count"]["verdict"] == "pass"
    assert (read_manifest(store, DAY2) or {})["checks"]["verdict"] == "passed"


def test_no_reader_of_the_dataset_ever_sees_a_held_day(
    start_simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    store = open_store(str(tmp_path / "data"))
    for number, day in enumerate((DAY1, DAY2), start=1):
        registry.set_day(number)
        assert extract(config_for(registry, store), day, allow_backdate=True).exit_code == 0
    registry.set_day(3)
    third = DAY2.replace(day=3)
    held = extract(config_for(registry, store, drop_org=DROPPED_ORG), third, allow_backdate=True)
    assert held.exit_code == ExitCode.HELD
    assert set(load_snapshots(store)["snapshot_date"].astype(str)) == {"2026-01-01", "2026-01-02"}
    published = report(store, days=7, by="model", top=None)
    assert published.attrs["end_snapshot"] == DAY2
    assert DROPPED_ORG in set(published["org"])  # the held day (without it) is not the end
    monkeypatch.chdir(tmp_path)  # the docs' recipe reads data/model_versions as written
    recipe = run_docs_duckdb()
    assert set(recipe["org"]) == set(published["org"])
    assert recipe["download_count"].sum() == published["download_count"].sum()
