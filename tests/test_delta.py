"""`output.format: delta`: the dataset as one Delta table, on a local path and on S3 (moto).

Each scenario runs the connector for real against the simulator and reads the table back the
way its users do (deltalake, polars), next to the connector's own readers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from delta_tables import (
    COUNTED,
    commit,
    commit_actions,
    counts,
    deltalake_counts,
    expected_counts,
    open_delta,
    polars_counts,
)
from helpers import TOKEN, config_document

from connector import compute_report, extract, load_snapshots, publish
from connector.config import parse_config
from connector.dataset.reader import read_manifest, snapshot_dates
from connector.dataset.store import Store
from connector.errors import ExitCode
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
ENV = {"MODEL_REGISTRY_TOKEN": TOKEN}
FIRST = date(2026, 1, 1)


def delta_config(registry: SimulatedRegistry, store: Store, **output: Any) -> Any:
    document = config_document(registry, store.uri, output_settings={"format": "delta", **output})
    return parse_config(document, ENV)


def run_day(
    config: Any, registry: SimulatedRegistry, sim_day: int, snapshot: date, **kw: Any
) -> Any:
    registry.set_day(sim_day)
    summary = extract(config, snapshot, allow_backdate=True, **kw)
    assert summary.exit_code == ExitCode.OK, summary.render_text()
    return summary


def loader_counts(store: Store) -> list[tuple[Any, ...]]:
    """The rows as `load_snapshots` returns them (nullable dtypes: pd.NA for no count)."""
    frame = load_snapshots(store, columns=COUNTED)
    frame["snapshot_date"] = frame["snapshot_date"].dt.date
    frame = frame.astype(object).where(frame.notna(), None)
    return counts(frame.to_dict("records"))


def test_days_reruns_report_and_time_travel(
    start_simulator: StartSimulator, store: Store, tmp_path: Path
) -> None:
    """Three daily snapshots, a re-run of the first with other counts, then the report, every
    reader and time travel back to the first publish of day one."""
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="objects")
    config = delta_config(registry, store)
    hive = parse_config(config_document(registry, tmp_path / "hive"), ENV)  # the oracle
    days = [FIRST + timedelta(days=i) for i in range(3)]
    first = [run_day(config, registry, i + 1, day) for i, day in enumerate(days)]
    # The oracle's first day holds day 9's counts: published last, so that no check sees its
    # counters go back (a check compares a day with the published day before it).
    for i, day in reversed(list(enumerate(days))):
        run_day(hive, registry, 9 if i == 0 else i + 1, day)
    version_of_day_one = read_manifest(store, FIRST)["delta_version"]
    untouched = [
        a["add"]["path"]
        for v in range(1, len(days))
        for a in commit_actions(store, v)
        if "add" in a
    ]

    rerun = run_day(config, registry, 9, FIRST)  # other counts, same date: replaced whole

    expected = sorted(
        expected_counts(registry, 9, FIRST)
        + [
            row
            for i, day in enumerate(days[1:], start=2)
            for row in expected_counts(registry, i, day)
        ],
        key=lambda t: tuple("" if v is None else str(v) for v in t),
    )
    assert deltalake_counts(store) == expected
    assert polars_counts(store) == expected
    assert loader_counts(store) == expected
    assert snapshot_dates(store) == days
    # Exactly one commit per publish; the re-run's commit touched day one only.
    table = open_delta(store)
    rerun_version = len(days)  # versions 0 .. len(days) - 1 are the first publishes
    assert table.version() == rerun_version
    rerun_actions = commit_actions(store, rerun_version)
    touched = {
        a[k]["partitionValues"]["snapshot_date"]
        for a in rerun_actions
        for k in ("add", "remove")
        if k in a
    }
    assert touched == {"2026-01-01"}
    assert all(a["remove"]["path"] not in untouched for a in rerun_actions if "remove" in a)
    # The manifest travels with the commit, and the day's _manifest.json is the same document.
    info = commit(store, rerun_version)
    assert info["connector.manifest"]["run_id"] == rerun.run_id
    assert info["operationParameters"]["predicate"].startswith("snapshot_date = '2026-01-01'")
    manifest = read_manifest(store, FIRST)
    assert manifest is not None and manifest["run_id"] == rerun.run_id
    assert manifest["rows"] == rerun.rows == len(expected_counts(registry, 9, FIRST))
    assert {k: v for k, v in manifest.items() if k not in ("files", "delta_version", "rows")} == {
        k: v for k, v in info["connector.manifest"].items() if k != "rows"
    }
    assert manifest["delta_version"] == rerun_version
    stored = json.loads(store.get("_manifests/2026-01-01.json") or b"{}")
    assert stored == manifest  # kept outside the table: a vacuum deletes what the log omits
    # Time travel: the version of the first publish still holds day one's first counts.
    old = [row for row in deltalake_counts(store, version_of_day_one) if row[0] == FIRST]
    assert old == expected_counts(registry, 1, FIRST) != expected_counts(registry, 9, FIRST)
    assert [row for row in polars_counts(store, version_of_day_one) if row[0] == FIRST] == old
    assert first[0].run_id != rerun.run_id
    # The report over the table equals the report over the same snapshots as Parquet.
    sim_day = {day: 9 if i == 0 else i + 1 for i, day in enumerate(days)}
    for start in days[:2]:  # day one now holds later counts than day two: a drop, then gains
        report = compute_report(store, start=start, end=days[-1], by="version", top=None)
        oracle = compute_report(
            tmp_path / "hive", start=start, end=days[-1], by="version", top=None
        )
        listed = {  # a row for every version at either end of the window
            row[1:4]
            for day in (start, days[-1])
            for row in expected_counts(registry, sim_day[day], day)
        }
        assert len(report.table) == len(listed)
        pd.testing.assert_frame_equal(report.table, oracle.table)
        assert (report.total_gained, report.notes) == (oracle.total_gained, oracle.notes)
    assert report.total_gained > 0


def test_processes_and_shards_publish_their_parts_in_one_commit(
    start_simulator: StartSimulator, store: Store
) -> None:
    registry = start_simulator(orgs=3, models_per_org=4, versions_shape="objects")
    config = delta_config(registry, store)
    run_day(config, registry, 1, FIRST, processes=2)
    assert open_delta(store).version() == 0  # the table's first commit holds both parts
    for index in (1, 2, 3):
        part = extract(config, FIRST + timedelta(days=1), allow_backdate=True, shard=(index, 3))
        assert part.staged, part.render_text()
    summary = publish(config, FIRST + timedelta(days=1), shards=3)
    assert summary.exit_code == ExitCode.OK, summary.render_text()
    assert open_delta(store).version() == 1
    assert commit(store, 1)["connector.manifest"]["shards"] == 3
    day_two = [row for row in deltalake_counts(store) if row[0] == FIRST + timedelta(days=1)]
    assert day_two == expected_counts(registry, 1, FIRST + timedelta(days=1))


def test_one_output_holds_one_format(start_simulator: StartSimulator, store: Store) -> None:
    """A Parquet dataset is never turned into a half table, nor a table fed Parquet files."""
    registry = start_simulator(orgs=1, models_per_org=2, versions_shape="objects")
    document = config_document(registry, store.uri)
    parquet = parse_config(document, ENV)
    run_day(parquet, registry, 1, FIRST)
    before = sorted(entry.name for entry in store.list("model_versions"))
    refused = extract(delta_config(registry, store), FIRST, allow_backdate=True)
    assert refused.exit_code == ExitCode.OUTPUT
    assert "holds a Parquet (Hive-partitioned) dataset, but output.format is delta" in (
        refused.message or ""
    )
    assert refused.run_outcome.output_failed and refused.requests == {}  # nothing was called
    assert sorted(entry.name for entry in store.list("model_versions")) == before

    other = store.uri.rstrip("/") + "-delta"
    table = parse_config(config_document(registry, other, output_settings={"format": "delta"}), ENV)
    run_day(table, registry, 1, FIRST)
    refused = extract(
        parse_config(config_document(registry, other), ENV), FIRST, allow_backdate=True
    )
    assert refused.exit_code == ExitCode.OUTPUT
    assert "holds a Delta table, but output.format is parquet" in (refused.message or "")
