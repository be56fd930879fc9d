"""A run end to end on each store (a local directory, and a bucket of a real S3 API): what a
reader finds after a publish, a re-run, a guard's refusal and a rejected body is the same."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from ground_truth import expected, project, store_rows
from helpers import config_document
from s3_objects import DAY1, ENV, triples
from stores import tree

from connector import extract, load_snapshots
from connector.config import Config, parse_config
from connector.dataset.datafile import read_footer
from connector.dataset.layout import DATA_NAME, partition_path
from connector.dataset.reader import read_manifest, snapshot_dates
from connector.dataset.store import Store
from connector.errors import ExitCode
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
PARTITION = partition_path(DAY1)


def config_for(registry: SimulatedRegistry, store: Store, **output: object) -> Config:
    document = config_document(
        registry, Path("unused"), output_settings={"uri": store.uri, **output}
    )
    return parse_config(document, ENV)


def test_a_partition_is_one_self_describing_data_file(
    start_simulator: StartSimulator, store: Store
) -> None:
    registry = start_simulator(orgs=2, models_per_org=4, versions_shape="objects", empty_models=1)
    summary = extract(config_for(registry, store), DAY1, allow_backdate=True)
    assert summary.exit_code == ExitCode.OK, summary.message
    assert summary.partition == store.display(PARTITION)
    record = f"_runs/2026-01-01/{summary.run_id}.json"
    assert sorted(p for p in tree(store) if p != "_connector.lock") == [
        record,
        f"{PARTITION}/_manifest.json",
        f"{PARTITION}/{DATA_NAME}",
    ]
    assert summary.record == store.display(record)
    assert json.loads(store.get(record) or b"")["run_id"] == summary.run_id
    manifest = json.loads(store.get(f"{PARTITION}/_manifest.json") or b"")
    assert read_manifest(store, DAY1) == manifest
    assert manifest["run_id"] == summary.run_id and manifest["rows"] == summary.rows
    footer = read_footer(store, f"{PARTITION}/{DATA_NAME}")  # the file describes itself
    assert footer is not None and footer["run_id"] == summary.run_id
    assert project(store_rows(store)) == project(expected(registry, 1))
    frame = load_snapshots(store)
    assert len(frame) == summary.rows
    assert set(frame["snapshot_date"].astype(str)) == {"2026-01-01"}


def test_a_rerun_replaces_the_day_and_leaves_nothing_behind(
    start_simulator: StartSimulator, store: Store
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    config = config_for(registry, store)
    first = extract(config, DAY1, allow_backdate=True)
    registry.set_day(5)  # download counts move on: the re-run must publish the new values
    second = extract(config, DAY1, allow_backdate=True)
    assert (first.exit_code, second.exit_code) == (ExitCode.OK, ExitCode.OK)
    assert read_manifest(store, DAY1)["run_id"] == second.run_id  # type: ignore[index]
    counts = load_snapshots(store, columns=["org", "model", "version", "download_count"])
    assert triples(counts) == triples(pd.DataFrame(expected(registry, 5)))
    left = {path.split("/")[0] for path in tree(store)}
    assert left <= {"model_versions", "_runs", "_connector.lock"}  # no staging, part or lease
    assert snapshot_dates(store) == [DAY1]


def test_the_publish_guard_keeps_the_previous_day_byte_for_byte(
    start_simulator: StartSimulator, store: Store
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    config = config_for(registry, store)
    assert extract(config, DAY1, allow_backdate=True).exit_code == ExitCode.OK
    before = tree(store, "model_versions")
    registry.set_faults(
        FaultPlan(not_found=frozenset(f"{o}/{m}" for o, m in registry.targets()[:3]))
    )
    guarded = extract(config, DAY1, allow_backdate=True)
    assert guarded.exit_code == ExitCode.NOT_PUBLISHED and not guarded.published
    assert tree(store, "model_versions") == before
    assert tree(store, "_staging") == {}


def test_rejected_payloads_are_kept_outside_the_dataset(
    start_simulator: StartSimulator, store: Store
) -> None:
    registry = start_simulator(orgs=1, models_per_org=4)
    org, model = registry.targets()[1]
    registry.set_faults(FaultPlan(malformed={f"{org}/{model}": "count_string"}))
    summary = extract(config_for(registry, store, min_success_ratio=0.5), DAY1, allow_backdate=True)
    assert summary.exit_code == ExitCode.PARTIAL
    assert summary.rejected_dir == store.display("_rejected/2026-01-01")
    kept = json.loads(store.get(f"_rejected/2026-01-01/{org}/{model}.json") or b"")
    assert kept["model"] == model and kept["body_bytes"] > 0
    assert [f["model"] for f in read_manifest(store, DAY1)["failures"]] == [model]  # type: ignore[index]
    assert model not in set(load_snapshots(store)["model"])


@pytest.mark.parametrize("date_form", ["2026-01-01", DAY1])
def test_the_library_takes_a_day_as_a_date_or_iso_text(
    start_simulator: StartSimulator, store: Store, date_form: object
) -> None:
    registry = start_simulator(orgs=1, models_per_org=2)
    summary = extract(config_for(registry, store), date_form, allow_backdate=True)  # type: ignore[arg-type]
    assert summary.exit_code == ExitCode.OK and summary.snapshot_date == "2026-01-01"
