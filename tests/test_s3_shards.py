"""Sharded snapshots and `--processes` on object storage, against a real S3 API (moto's server on
127.0.0.1, started by the fixtures): shards staged on s3:// and published equal a one-process
run row for row; missing, stale and locked shards are refused with nothing published; a re-run
replaces only its own shard's part. The data is read back with DuckDB and pandas."""

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
from connector.dataset.locate import open_store as locate
from connector.dataset.reader import read_manifest
from connector.errors import ExitCode
from connector.extraction.sharding import shard_of
from connector.simulator.server import FaultPlan, SimulatedRegistry

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


def test_shards_on_s3_publish_exactly_the_rows_of_a_one_process_run(
    setup: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, uri, config = setup
    broken = ["org-00/model-0001", "org-01/model-0004"]
    assert {shard_of(*key.split("/"), 2) for key in broken} == {1, 2}  # one fails in each shard
    registry.set_faults(FaultPlan(not_found=frozenset(broken)))
    single = s3_document(registry, f"s3://{s3_bucket}/single", min_success_ratio=0.8)
    assert extract(parse_config(single, ENV), DAY1, allow_backdate=True).exit_code == 3

    monkeypatch.chdir(tmp_path)
    for index in (1, 2):
        staged = extract_shard(config, f"{index}/2", "--summary-format", "json")
        assert staged.exit_code == ExitCode.PARTIAL, staged.output  # staged anyway
        summary = json.loads(staged.stdout)
        assert summary["published"] is False and summary["shard"] == f"{index}/2"
        record = part_record(s3_bucket, index, 2)
        assert part_keys(s3_bucket, index, 2) == sorted([staging.RECORD_NAME, *record["files"]])
        assert summary["staged"] == f"{uri}/_shards/{DAY}/{index}-of-2"
    assert not keys(s3_bucket, "lake/model_versions")  # a shard never publishes
    assert not (tmp_path / "s3:").exists()  # an s3:// URI is never taken for a local path

    result = publish(config, 2, "--min-success-ratio", "0.8")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "(from 2 shards)" in result.stdout
    assert rows_without_run_columns(s3_bucket, "lake") == rows_without_run_columns(
        s3_bucket, "single"
    )
    want = [r for r in registry.expected_rows(1) if f"{r['org']}/{r['model']}" not in broken]
    assert triples(load_snapshots(uri)) == triples(pd.DataFrame(want))
    manifest = read_manifest(uri, DAY1)
    assert manifest is not None and manifest["shards"] == 2
    assert [f"{f['org']}/{f['model']}" for f in manifest["failures"]] == broken
    assert manifest["targets"] == {"attempted": 12, "succeeded": 10, "failed": 2}
    # One data object, its manifest, and the publish's run record: every part and lease gone.
    assert sorted(keys(s3_bucket, "lake/model_versions")) == [
        f"lake/{PARTITION}/_manifest.json",
        f"lake/{PARTITION}/{DATA_NAME}",
    ]
    for leftover in ("_shards", "_staging", LOCKS_DIR):
        assert not keys(s3_bucket, f"lake/{leftover}"), leftover


def test_a_missing_shard_on_s3_is_refused_and_the_published_object_is_untouched(
    setup: Any, s3_bucket: str
) -> None:
    _, uri, config = setup
    assert cli("extract", "--config", str(config), "--date", DAY, "--allow-backdate").exit_code == 0
    data_key = f"lake/{PARTITION}/{DATA_NAME}"
    before = (
        object_bytes(s3_bucket, data_key),
        object_bytes(s3_bucket, f"lake/{PARTITION}/_manifest.json"),
    )
    for index in (1, 3):
        assert extract_shard(config, f"{index}/3").exit_code == 0
    result = publish(config, 3)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE == 9
    assert f"shard 2/3 is missing: nothing is staged in {uri}/_shards/{DAY}/2-of-3" in result.output
    assert "nothing was published" in result.output
    after = (
        object_bytes(s3_bucket, data_key),
        object_bytes(s3_bucket, f"lake/{PARTITION}/_manifest.json"),
    )
    assert after == before  # byte for byte
    assert part_keys(s3_bucket, 1, 3) and part_keys(s3_bucket, 3, 3)  # the parts are kept
    assert not keys(s3_bucket, "lake/_staging") and not keys(s3_bucket, f"lake/{LOCKS_DIR}")
    other = publish(config, 2)  # a count never staged names the ones that were
    assert other.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "also staged for this date: 1-of-3, 3-of-3" in other.output


def test_rerunning_a_shard_on_s3_replaces_only_its_part(setup: Any, s3_bucket: str) -> None:
    registry, uri, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    other = {
        key: object_bytes(s3_bucket, f"lake/_shards/{DAY}/2-of-2/{key}")
        for key in part_keys(s3_bucket, 2, 2)
    }
    first = part_record(s3_bucket, 1, 2)
    registry.set_day(2)  # shard 1 now fetches other counts
    assert extract_shard(config, "1/2").exit_code == 0
    again = part_record(s3_bucket, 1, 2)
    assert again["run_id"] != first["run_id"]
    assert part_keys(s3_bucket, 1, 2) == sorted([staging.RECORD_NAME, *again["files"]])
    assert not set(first["files"]) & set(again["files"])  # the earlier run's objects are gone
    assert {
        key: object_bytes(s3_bucket, f"lake/_shards/{DAY}/2-of-2/{key}")
        for key in part_keys(s3_bucket, 2, 2)
    } == other
    assert publish(config, 2).exit_code == 0
    shard1 = {t for t in registry.targets() if shard_of(*t, 2) == 1}
    want = [r for r in registry.expected_rows(2) if (r["org"], r["model"]) in shard1] + [
        r for r in registry.expected_rows(1) if (r["org"], r["model"]) not in shard1
    ]
    assert triples(load_snapshots(uri)) == triples(pd.DataFrame(want))


def test_a_shard_staged_on_s3_with_another_config_is_stale(
    setup: Any, s3_bucket: str, tmp_path: Path
) -> None:
    registry, uri, config = setup
    assert extract_shard(config, "1/2").exit_code == 0
    fewer = s3_document(registry, uri)
    fewer["orgs"][1]["models"] = fewer["orgs"][1]["models"][:3]
    assert extract_shard(write_config(tmp_path / "other.yaml", fewer), "2/2").exit_code == 0
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "shard 2/2 is stale: staged with another configuration" in result.output
    assert "shard 1/2" not in result.output
    assert not keys(s3_bucket, "lake/model_versions")


def test_a_damaged_part_on_s3_is_refused(setup: Any, s3_bucket: str) -> None:
    _, uri, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    [name] = part_record(s3_bucket, 2, 2)["files"]
    locate(uri).filesystem.delete_file(f"{s3_bucket}/lake/_shards/{DAY}/2-of-2/{name}")
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert f"shard 2/2 is damaged: files missing in {uri}/_shards/{DAY}/2-of-2" in result.output
    assert not keys(s3_bucket, "lake/model_versions")


def test_a_shard_in_progress_on_s3_blocks_publish_and_a_second_run_of_it(
    setup: Any, s3_bucket: str
) -> None:
    _, uri, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    held = part_record(s3_bucket, 2, 2)
    with staging.shard_lock(locate(uri), DAY1, 2, 2, "someone-else"):
        result = publish(config, 2)
        assert result.exit_code == ExitCode.LOCK_HELD, result.output
        assert "2-of-2.lock" in result.output and "(run someone-else)" in result.output
        again = extract_shard(config, "2/2")
        assert again.exit_code == ExitCode.LOCK_HELD
        assert extract_shard(config, "1/2").exit_code == 0  # other shards are not held up
        assert part_record(s3_bucket, 2, 2) == held  # the refused run changed nothing
    assert not keys(s3_bucket, "lake/model_versions")
    assert publish(config, 2).exit_code == 0
    assert not keys(s3_bucket, "lake/_shards") and not keys(s3_bucket, f"lake/{LOCKS_DIR}")


def test_a_426_in_a_shard_on_s3_unstages_it(setup: Any, s3_bucket: str) -> None:
    registry, _, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    registry.set_faults(FaultPlan(upgrade_required=True))
    assert extract_shard(config, "2/2").exit_code == ExitCode.INCOMPATIBLE_API
    registry.set_faults(FaultPlan())
    assert staging.RECORD_NAME not in part_keys(s3_bucket, 2, 2)
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "shard 2/2 is missing" in result.output


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
