"""Object storage end to end against a real S3 API (moto's server on 127.0.0.1, started by the
fixtures): extract, re-run, publish guard, `_rejected/`, manifests, report, load_snapshots, the
lease lock and credential hygiene. Readers are the real ones: pandas, DuckDB, pyarrow."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from ground_truth import expected, project
from helpers import write_config
from s3_objects import (
    DAY1,
    DAY2,
    ENV,
    S3_KEY_ID,
    S3_SECRET,
    duckdb_rows,
    keys,
    object_bytes,
    s3_document,
    triples,
)

from connector import extract, load_snapshots
from connector.cli import main
from connector.config import parse_config
from connector.dataset.flatten import flatten
from connector.dataset.lease import LOCKS_DIR, ObjectStoreLock
from connector.dataset.objectstore import DATA_NAME, MANIFEST_KEY, ObjectStoreWriter
from connector.dataset.reader import read_manifest, snapshot_dates
from connector.dataset.storage import locate
from connector.errors import ConfigError, ExitCode, LockHeldError, OutputError
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]


def test_extract_publishes_one_self_describing_object_per_partition(
    start_simulator: StartSimulator, s3_bucket: str, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=4, versions_shape="objects", empty_models=1)
    uri = f"s3://{s3_bucket}/lake"
    summary = extract(parse_config(s3_document(registry, uri), ENV), DAY1, allow_backdate=True)
    assert summary.exit_code == ExitCode.OK, summary.message
    partition = "lake/model_versions/snapshot_date=2026-01-01"
    assert summary.partition == f"s3://{s3_bucket}/{partition}"
    record = f"lake/_runs/2026-01-01/{summary.run_id}.json"
    assert sorted(keys(s3_bucket)) == [
        record,
        f"{partition}/_manifest.json",
        f"{partition}/{DATA_NAME}",
    ]
    assert summary.record == f"s3://{s3_bucket}/{record}"
    assert json.loads(object_bytes(s3_bucket, record))["run_id"] == summary.run_id
    rows = duckdb_rows(s3_bucket)
    compared = [{k: v for k, v in row.items() if k in project(rows)[0]} for row in rows]
    assert project(compared) == project(expected(registry, 1))
    # The manifest lives in the data object's footer too: the object describes itself.
    manifest = json.loads(object_bytes(s3_bucket, f"{partition}/_manifest.json"))
    assert read_manifest(uri, DAY1) == manifest
    assert manifest["run_id"] == summary.run_id and manifest["rows"] == summary.rows
    frame = load_snapshots(uri)
    assert len(frame) == summary.rows == len(rows)
    assert set(frame["snapshot_date"].astype(str)) == {"2026-01-01"}
    fs = locate(uri).filesystem
    pandas_frame = pd.read_parquet(f"{s3_bucket}/lake/model_versions", filesystem=fs)
    assert len(pandas_frame) == summary.rows


def test_rerun_on_the_same_date_replaces_the_snapshot_and_leaves_nothing_behind(
    start_simulator: StartSimulator, s3_bucket: str, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    uri = f"s3://{s3_bucket}/lake"
    config = parse_config(s3_document(registry, uri), ENV)
    first = extract(config, DAY1, allow_backdate=True)
    registry.set_day(5)  # download counts move on: the re-run must publish the new values
    second = extract(config, DAY1, allow_backdate=True)
    assert (first.exit_code, second.exit_code) == (ExitCode.OK, ExitCode.OK)
    assert read_manifest(uri, DAY1)["run_id"] == second.run_id  # type: ignore[index]
    counts = load_snapshots(uri, columns=["org", "model", "version", "download_count"])
    assert triples(counts) == triples(pd.DataFrame(expected(registry, 5)))
    assert not keys(s3_bucket, "lake/_staging") and not keys(s3_bucket, f"lake/{LOCKS_DIR}")
    assert snapshot_dates(uri) == [DAY1]


def test_publish_guard_on_s3_keeps_the_previous_object_byte_for_byte(
    start_simulator: StartSimulator, s3_bucket: str, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    uri = f"s3://{s3_bucket}/lake"
    config = parse_config(s3_document(registry, uri), ENV)
    assert extract(config, DAY1, allow_backdate=True).exit_code == ExitCode.OK
    data_key = f"lake/model_versions/snapshot_date=2026-01-01/{DATA_NAME}"
    before = object_bytes(s3_bucket, data_key)
    registry.set_faults(
        FaultPlan(not_found=frozenset(f"{o}/{m}" for o, m in registry.targets()[:3]))
    )
    guarded = extract(config, DAY1, allow_backdate=True)
    assert guarded.exit_code == ExitCode.NOT_PUBLISHED and not guarded.published
    assert object_bytes(s3_bucket, data_key) == before
    assert not keys(s3_bucket, "lake/_staging")


def test_rejected_payloads_are_kept_on_s3_outside_the_dataset(
    start_simulator: StartSimulator, s3_bucket: str, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=4)
    org, model = registry.targets()[1]
    registry.set_faults(FaultPlan(malformed={f"{org}/{model}": "count_string"}))
    uri = f"s3://{s3_bucket}/lake"
    summary = extract(
        parse_config(s3_document(registry, uri, min_success_ratio=0.5), ENV),
        DAY1,
        allow_backdate=True,
    )
    assert summary.exit_code == ExitCode.PARTIAL
    assert summary.rejected_dir == f"{uri}/_rejected/2026-01-01"
    kept = json.loads(object_bytes(s3_bucket, f"lake/_rejected/2026-01-01/{org}/{model}.json"))
    assert kept["model"] == model and kept["body_bytes"] > 0
    assert [f["model"] for f in read_manifest(uri, DAY1)["failures"]] == [model]  # type: ignore[index]
    assert model not in set(load_snapshots(uri)["model"])


def test_report_reads_s3_with_the_env_endpoint_or_the_config_storage_options(
    start_simulator: StartSimulator,
    s3_bucket: str,
    token_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3)
    uri = f"s3://{s3_bucket}/lake"
    config = parse_config(s3_document(registry, uri), ENV)
    assert extract(config, DAY1, allow_backdate=True).exit_code == ExitCode.OK
    registry.set_day(2)
    assert extract(config, DAY2, allow_backdate=True).exit_code == ExitCode.OK
    by_env = CliRunner().invoke(main, ["report", "--data", uri, "--format", "json"])
    assert by_env.exit_code == 0, by_env.output
    assert json.loads(by_env.stdout)
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # from now on only the config knows the endpoint
    document = s3_document(registry, uri, storage_options={"endpoint_url": endpoint})
    path = write_config(tmp_path / "c.yaml", document)
    by_config = CliRunner().invoke(main, ["report", "--config", str(path), "--format", "json"])
    assert by_config.exit_code == 0, by_config.output
    assert json.loads(by_config.stdout) == json.loads(by_env.stdout)


def test_credentials_never_appear_in_output_logs_or_objects(
    start_simulator: StartSimulator, s3_bucket: str, token_env: str, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3)
    org, model = registry.targets()[0]
    registry.set_faults(FaultPlan(malformed={f"{org}/{model}": "invalid_json"}))
    uri = f"s3://{s3_bucket}/lake"
    config = write_config(tmp_path / "c.yaml", s3_document(registry, uri, min_success_ratio=0.5))
    runner = CliRunner()
    outputs = [
        runner.invoke(
            main,
            [
                "extract",
                "--config",
                str(config),
                "--date",
                "2026-01-01",
                "--allow-backdate",
                "--log-level",
                "DEBUG",
                "--summary-format",
                "json",
                "--metrics-file",
                str(tmp_path / "m.prom"),
            ],
        ),
        runner.invoke(
            main, ["extract", "--config", str(config), "--date", "2026-01-02", "--allow-backdate"]
        ),
        runner.invoke(main, ["report", "--data", uri, "--format", "json"]),
        # A failure naming the store: a bucket that does not exist.
        runner.invoke(main, ["extract", "--config", str(config), "--output", "s3://no-such-bkt/x"]),
        runner.invoke(main, ["report", "--data", "s3://no-such-bkt/x"]),
    ]
    assert [r.exit_code for r in outputs[:3]] == [ExitCode.PARTIAL, ExitCode.PARTIAL, 0]
    assert outputs[3].exit_code == ExitCode.OUTPUT and "no-such-bkt" in outputs[3].output
    assert outputs[4].exit_code != 0 and "no-such-bkt" in outputs[4].output
    texts = [r.output for r in outputs] + [(tmp_path / "m.prom").read_text()]
    texts += [object_bytes(s3_bucket, key).decode("utf-8", "replace") for key in keys(s3_bucket)]
    for text in texts:
        assert S3_KEY_ID not in text and S3_SECRET not in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aws_secret_access_key": "x"}, "credentials never go in the config file"),
        ({"access_key": "x", "region": "eu-west-1"}, "credentials never go in the config file"),
        ({"session_token": "x"}, "credentials never go in the config file"),
        ({"endpoint_url": "http://user:pw@127.0.0.1:9000"}, "must not carry user:password@"),
        ({"endpoint_url": "ftp://127.0.0.1"}, "must be an http:// or https:// URL"),
        ({"addressing_style": "sideways"}, "Input should be 'path' or 'virtual'"),
        ({"bucket_acl": "private"}, "unknown key"),
    ],
)
def test_storage_options_refuse_secrets_and_unknown_settings(
    options: dict[str, str], message: str, start_simulator: StartSimulator
) -> None:
    registry = start_simulator()
    document = s3_document(registry, "s3://bkt/lake", storage_options=options)
    with pytest.raises(ConfigError) as caught:
        parse_config(document, ENV)
    text = str(caught.value)
    assert "output.storage_options" in text and message in text
    assert "pw@" not in text  # the value itself is never echoed


@pytest.mark.parametrize(
    ("uri", "options", "message"),
    [
        ("./data", {"region": "eu-west-1"}, "storage_options only apply to an s3:// uri"),
        ("s3://KEY:SECRET@bkt/lake", None, "must not carry user@"),
        ("s3://B/lake", None, "valid bucket name"),
        ("s3://bkt/lake?versionId=1", None, "must not carry a query string"),
    ],
)
def test_output_uri_for_object_storage_is_validated(
    uri: str, options: dict[str, str] | None, message: str, start_simulator: StartSimulator
) -> None:
    registry = start_simulator()
    extra = {"storage_options": options} if options else {}
    with pytest.raises(ConfigError) as caught:
        parse_config(s3_document(registry, uri, **extra), ENV)
    assert message in str(caught.value) and "SECRET" not in str(caught.value)


def test_storage_options_reach_the_filesystem(s3_bucket: str) -> None:
    options = {"region": "eu-west-3", "addressing_style": "path", "connect_timeout_seconds": 2.5}
    fs = locate(f"s3://{s3_bucket}/lake", options).filesystem
    assert fs.region == "eu-west-3"
    with pytest.raises(ConfigError, match="only apply to s3://"):
        locate("/tmp/data", {"region": "eu-west-3"})


# --- the lease lock -------------------------------------------------------------------------


def test_a_live_lease_refuses_a_second_run_and_names_the_holder(s3_bucket: str) -> None:
    location = locate(f"s3://{s3_bucket}/lake")
    with ObjectStoreLock(location, "run-holder"):
        with pytest.raises(LockHeldError, match=r"run run-holder"):
            ObjectStoreLock(location, "run-second").acquire()
        # The refused run removed its own marker: only the holder's is left.
        assert list(keys(s3_bucket, f"lake/{LOCKS_DIR}")) == [f"lake/{LOCKS_DIR}/run-holder.json"]
    assert not keys(s3_bucket, f"lake/{LOCKS_DIR}")
    with ObjectStoreLock(location, "run-third"):  # released: free again
        pass


def test_a_scoped_lease_competes_only_with_its_own_scope(s3_bucket: str) -> None:
    """Per-shard locks on object storage: one scope per shard, independent of the output's."""
    location = locate(f"s3://{s3_bucket}/lake")
    scope = "_shards/2026-01-02/1-of-2.lock"
    with ObjectStoreLock(location, "run-shard-1", scope=scope):
        with pytest.raises(LockHeldError, match=r"run run-shard-1") as refused:
            ObjectStoreLock(location, "run-shard-1-again", scope=scope).acquire()
        assert "1-of-2.lock" in str(refused.value)  # the refusal names which lock
        with ObjectStoreLock(location, "run-shard-2", scope="_shards/2026-01-02/2-of-2.lock"):
            with ObjectStoreLock(location, "run-output"):  # the output lock: another scope
                assert sorted(keys(s3_bucket, "lake")) == [
                    "lake/_locks/run-output.json",
                    "lake/_shards/2026-01-02/1-of-2.lock/run-shard-1.json",
                    "lake/_shards/2026-01-02/2-of-2.lock/run-shard-2.json",
                ]
    assert not keys(s3_bucket, "lake")


def _plant_marker(bucket: str, run_id: str, **holder: Any) -> None:
    fs = locate(f"s3://{bucket}").filesystem
    with fs.open_output_stream(f"{bucket}/lake/{LOCKS_DIR}/{run_id}.json") as stream:
        stream.write(json.dumps({"run_id": run_id, **holder}).encode())


def test_a_killed_holder_on_this_host_or_an_expired_lease_is_taken_over(s3_bucket: str) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    _plant_marker(
        s3_bucket, "run-killed", pid=int(dead.stdout), host=socket.gethostname(), lease_seconds=3600
    )
    _plant_marker(s3_bucket, "run-elsewhere", pid=1, host="other-host", lease_seconds=0)
    location = locate(f"s3://{s3_bucket}/lake")
    with ObjectStoreLock(location, "run-new"):
        assert list(keys(s3_bucket, f"lake/{LOCKS_DIR}")) == [f"lake/{LOCKS_DIR}/run-new.json"]


def test_a_live_lease_on_another_host_is_respected(s3_bucket: str) -> None:
    _plant_marker(s3_bucket, "run-remote", pid=1, host="other-host", lease_seconds=3600)
    with pytest.raises(LockHeldError, match="other-host"):
        ObjectStoreLock(locate(f"s3://{s3_bucket}/lake"), "run-new").acquire()


def test_a_lost_lease_refuses_to_publish_and_renewal_keeps_it(s3_bucket: str) -> None:
    location = locate(f"s3://{s3_bucket}/lake")
    lock = ObjectStoreLock(location, "run-a", lease_seconds=0.2).acquire()
    try:
        assert lock.renewed.wait(30)  # the lease thread rewrote the marker
        lock.check()
        location.filesystem.delete_file(lock.path)  # another run judged it stale
        with pytest.raises(OutputError, match="lost the lock"):
            lock.check()
    finally:
        lock.release()


def test_two_unlocked_publishes_of_one_date_leave_one_complete_object(s3_bucket: str) -> None:
    """Even without the lock (a lease lost to a paused process), a publish replaces one object
    atomically: the partition holds one complete object whose footer manifest is its own."""
    location = locate(f"s3://{s3_bucket}/lake")
    writers = [ObjectStoreWriter(location, DAY1, f"run-{n}", batch_rows=100) for n in (1, 2)]
    for count, writer in enumerate(writers, start=1):
        payload = {"name": "acme/m", "versions": [f"{count}.{i}" for i in range(50 * count)]}
        writer.add_rows(flatten(payload, org="acme", model="m", extracted_at=1))
    writers[0]._flush()
    writers[1]._flush()
    for writer in writers:
        writer.publish({"run_id": writer.run_id})
    partition = "lake/model_versions/snapshot_date=2026-01-01"
    assert sorted(keys(s3_bucket, partition)) == [
        f"{partition}/_manifest.json",
        f"{partition}/{DATA_NAME}",
    ]
    frame = load_snapshots(location)
    manifest = read_manifest(location, DAY1)
    assert manifest is not None and manifest["rows"] == len(frame) == 100
    assert manifest["run_id"] == "run-2"
    footer = pq.read_metadata(
        f"{s3_bucket}/{partition}/{DATA_NAME}", filesystem=location.filesystem
    )
    assert json.loads(footer.metadata[MANIFEST_KEY])["rows"] == footer.num_rows == 100
