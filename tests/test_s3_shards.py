"""Sharded snapshots and `--processes` on object storage, against a real S3 API (moto's server on
127.0.0.1, started by the fixtures): what only object storage has. Shard runs and publishes
SIGKILLed while the server holds a chosen request leave the previous part or object and the
next run recovers; `--processes` children reach the store of their run. The scenarios of
staging, publishing and refusing on any store are in test_shards.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from multiprocessing import forkserver
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import write_config
from s3_objects import DAY1, ENV, duckdb_rows, keys, kill_when, object_bytes, s3_document, triples
from s3_server import S3Server, is_copy_to, is_upload_to
from shard_runs import cli, extract_shard, publish

from connector import extract, load_snapshots
from connector.config import parse_config
from connector.dataset import shards as staging
from connector.dataset.layout import DATA_NAME
from connector.dataset.lease import LOCKS_DIR
from connector.dataset.reader import read_manifest
from connector.errors import ExitCode
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY = "2026-01-01"
PARTITION = f"model_versions/snapshot_date={DAY}"
REPO = Path(__file__).parents[1]


def rows_without_run_columns(bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every row DuckDB reads, without `extracted_at` (the one column that differs by run)."""
    return [
        {k: v for k, v in row.items() if k != "extracted_at"} for row in duckdb_rows(bucket, prefix)
    ]


def part_keys(bucket: str, index: int, count: int, day: str = DAY) -> list[str]:
    """The object names in one staged part."""
    prefix = f"lake/_shards/{day}/{index}-of-{count}/"
    return sorted(key.removeprefix(prefix) for key in keys(bucket, prefix.rstrip("/")))


def part_record(bucket: str, index: int, count: int) -> dict[str, Any]:
    key = f"lake/_shards/{DAY}/{index}-of-{count}/{staging.RECORD_NAME}"
    record: dict[str, Any] = json.loads(object_bytes(bucket, key))
    return record


@pytest.fixture
def setup(
    start_simulator: StartSimulator, s3_bucket: str, token_env: str, tmp_path: Path
) -> tuple[SimulatedRegistry, str, Path]:
    registry = start_simulator(orgs=2, models_per_org=6, versions_shape="objects")
    uri = f"s3://{s3_bucket}/lake"
    return registry, uri, write_config(tmp_path / "c.yaml", s3_document(registry, uri))


def test_two_processes_on_s3_publish_what_one_process_publishes(
    setup: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also when the forkserver the children come from was started earlier with other AWS
    settings (another run in the same interpreter, as in an orchestrator's worker): the
    children take this run's, or they would not reach this store."""
    forkserver._forkserver._stop()  # type: ignore[attr-defined]  # so the one started below is the one the run uses
    with monkeypatch.context() as elsewhere:
        elsewhere.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
        forkserver.ensure_running()
    registry, uri, _ = setup
    day = DAY1
    one = extract(
        parse_config(s3_document(registry, f"s3://{s3_bucket}/single"), ENV),
        day,
        allow_backdate=True,
    )
    two = extract(
        parse_config(s3_document(registry, uri), ENV), day, allow_backdate=True, processes=2
    )
    assert (one.exit_code, two.exit_code) == (ExitCode.OK, ExitCode.OK), two.message
    assert two.shards == 2 and two.rows == one.rows
    assert rows_without_run_columns(s3_bucket, "lake") == rows_without_run_columns(
        s3_bucket, "single"
    )
    assert read_manifest(uri, day)["run_id"] == two.run_id  # type: ignore[index]
    assert two.record == f"{uri}/_runs/{DAY}/{two.run_id}.json"  # one run, one record
    assert len(keys(s3_bucket, "lake/_runs")) == 1
    for leftover in ("_shards", "_staging", LOCKS_DIR):
        assert not keys(s3_bucket, f"lake/{leftover}"), leftover


# --- killed runs (real processes, SIGKILLed while the S3 server holds a chosen request) -------


SHARD_HOLDS = {
    # a data object of the part being uploaded (a PUT of the object or of one multipart part)
    "upload": lambda env: is_upload_to("/_shards/")(env) and ".parquet" in env["PATH_INFO"],
    # the record that would commit the new part, after its data objects were complete
    "record": is_upload_to(f"/{staging.RECORD_NAME}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(SHARD_HOLDS))
def test_a_shard_run_killed_on_s3_leaves_the_previous_part_and_the_next_run_recovers(
    stage: str, setup: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    registry, uri, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    before = part_record(s3_bucket, 1, 2)
    listed = {
        name: object_bytes(s3_bucket, f"lake/_shards/{DAY}/1-of-2/{name}")
        for name in before["files"]
    }
    registry.set_day(4)  # the killed run fetched other counts
    kill_when(
        s3_server,
        SHARD_HOLDS[stage],
        "extract",
        "--config",
        str(config),
        "--date",
        DAY,
        "--allow-backdate",
        "--shard",
        "1/2",
    )

    assert part_record(s3_bucket, 1, 2) == before  # the part is still the earlier run's
    for name, data in listed.items():
        assert object_bytes(s3_bucket, f"lake/_shards/{DAY}/1-of-2/{name}") == data
    orphans = set(part_keys(s3_bucket, 1, 2)) - {staging.RECORD_NAME, *before["files"]}
    assert bool(orphans) == (stage == "record")  # a complete object no record lists
    assert keys(s3_bucket, f"lake/_shards/{DAY}/1-of-2.lock")  # the dead run's lease marker

    # publish takes over the dead run's lease, reads only what the record lists (no row
    # twice, none of the killed run's counts), and removes every part, orphans included
    result = publish(config, 2)
    assert result.exit_code == 0, result.output
    assert triples(load_snapshots(uri)) == triples(pd.DataFrame(registry.expected_rows(1)))
    for leftover in ("_shards", "_staging", LOCKS_DIR):
        assert not keys(s3_bucket, f"lake/{leftover}"), leftover


@pytest.mark.slow
def test_a_rerun_after_a_killed_shard_run_on_s3_cleans_what_it_left(
    setup: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    registry, _, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    registry.set_day(4)
    kill_when(
        s3_server,
        SHARD_HOLDS["record"],
        "extract",
        "--config",
        str(config),
        "--date",
        DAY,
        "--allow-backdate",
        "--shard",
        "1/2",
    )
    assert len(part_keys(s3_bucket, 1, 2)) > 1 + len(part_record(s3_bucket, 1, 2)["files"])
    again = extract_shard(config, "1/2")  # takes over the dead run's lease
    assert again.exit_code == 0, again.output
    record = part_record(s3_bucket, 1, 2)
    assert part_keys(s3_bucket, 1, 2) == sorted([staging.RECORD_NAME, *record["files"]])
    assert not keys(s3_bucket, f"lake/_shards/{DAY}/1-of-2.lock")


@pytest.mark.slow
def test_a_publish_killed_on_s3_leaves_the_previous_object_and_the_parts(
    setup: Any, s3_server: S3Server, s3_bucket: str
) -> None:
    registry, uri, config = setup
    assert cli("extract", "--config", str(config), "--date", DAY, "--allow-backdate").exit_code == 0
    data_key = f"lake/{PARTITION}/{DATA_NAME}"
    before = object_bytes(s3_bucket, data_key)
    old_rows = triples(load_snapshots(uri))
    registry.set_day(3)
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    records = [part_record(s3_bucket, index, 2) for index in (1, 2)]
    kill_when(
        s3_server,
        is_copy_to("/model_versions/"),
        "publish",
        "--config",
        str(config),
        "--date",
        DAY,
        "--shards",
        "2",
    )

    assert object_bytes(s3_bucket, data_key) == before  # the published object, byte for byte
    assert triples(load_snapshots(uri)) == old_rows
    assert [part_record(s3_bucket, index, 2) for index in (1, 2)] == records  # still staged
    result = publish(config, 2)  # takes over the leases, cleans the dead run's staging
    assert result.exit_code == 0, result.output
    assert triples(load_snapshots(uri)) == triples(pd.DataFrame(registry.expected_rows(3)))
    for leftover in ("_shards", "_staging", LOCKS_DIR):
        assert not keys(s3_bucket, f"lake/{leftover}"), leftover
