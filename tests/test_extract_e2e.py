"""The CLI against the simulated registry on a real socket, the dataset read back by DuckDB and
pandas and compared row for row with the simulator's ground truth."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from ground_truth import DAY1, DAY2, dataset_rows, expected, project
from helpers import config_document, file_hashes, prom_key, prom_samples, write_config

from connector.cli import main
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]


def run_extract(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["extract", "--config", str(config), "--allow-backdate", *args])


@pytest.mark.parametrize("version_detail", ["missing", "all", "off"])
@pytest.mark.parametrize("shape", ["strings", "objects", "mixed"])
def test_dataset_equals_ground_truth(
    shape: str,
    version_detail: str,
    start_simulator: StartSimulator,
    tmp_path: Path,
    token_env: str,
) -> None:
    """strings + missing: every row holds the registry's values for its version; off: the
    rows a string entry cannot fill stay null, as before version detail existed."""
    registry = start_simulator(orgs=2, models_per_org=4, versions_shape=shape, empty_models=1)
    document = config_document(
        registry, tmp_path / "out", registry_settings={"version_detail": version_detail}
    )
    config = write_config(tmp_path / "c.yaml", document)
    result = run_extract(config, "--date", DAY1)
    assert result.exit_code == 0, result.output
    rows = dataset_rows(tmp_path / "out")
    # The typed summary fields (schema v3) included: equal to the registry's in every row,
    # wherever it said them (latest, object entries, getModelVersion), never left in `extra`.
    assert project(rows) == project(expected(registry, 1, version_detail))
    assert all(row["extra"] is None for row in rows)
    if shape == "strings" and version_detail == "missing":
        assert all(row["download_count"] is not None for row in rows)
        assert any(not row["is_latest"] for row in rows)
    assert {row["snapshot_date"].isoformat() for row in rows} == {DAY1}
    assert "targets   8 ok, 0 failed of 8" in result.stdout


def test_a_registry_as_the_contract_describes_it_yields_every_model_and_version(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    """Contract v2 as the real service answers: an API key taken as X-API-Key only, a base
    URL copied with its /api/v1, listModels capped at 25 a page, `versions` as strings, the
    list named by its slug: every model of the org, every version with its true count and
    its typed summary fields."""
    registry = start_simulator(
        orgs=2,
        models_per_org=60,
        versions_per_model=3,
        auth_scheme="api-key",
        page_cap=25,
        versions_shape="strings",
        list_name="slug",
    )
    document = config_document(
        registry,
        tmp_path / "out",
        orgs=[{"name": org, "models": ["*"]} for org in ("org-00", "org-01")],
        registry_settings={
            "base_url": f"{registry.url}/api/v1/",
            "auth_scheme": "api-key",
            "concurrency": 8,
        },
    )
    config = write_config(tmp_path / "c.yaml", document)
    result = run_extract(config, "--date", DAY1, "--summary-format", "json")
    assert result.exit_code == 0, result.output
    rows = dataset_rows(tmp_path / "out")
    assert project(rows) == project(expected(registry, 1))
    assert {row["model"] for row in rows} == {f"model-{i:04d}" for i in range(60)}
    assert all(row["download_count"] is not None for row in rows)
    assert all(row["model_name"] == f"{row['org']}/{row['model']}" for row in rows)
    assert json.loads(result.stdout)["requests_by_operation"]["listModels"] == 6  # 3 pages each
    stats = registry.stats()
    assert set(stats.authorization_headers_seen) == {None}


def test_column_types_as_duckdb_and_pandas_see_them(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(versions_shape="strings")
    document = config_document(
        registry, tmp_path / "out", registry_settings={"version_detail": "off"}
    )
    config = write_config(tmp_path / "c.yaml", document)
    assert run_extract(config, "--date", DAY1).exit_code == 0
    described = duckdb.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{tmp_path}/out/model_versions/*/*.parquet', "
        "hive_partitioning=true)"
    ).fetchall()
    types = {name: kind for name, kind, *_ in described}
    assert types == {
        "extracted_at": "TIMESTAMP WITH TIME ZONE",
        "org": "VARCHAR",
        "model": "VARCHAR",
        "model_name": "VARCHAR",
        "version": "VARCHAR",
        "version_rank": "INTEGER",
        "is_latest": "BOOLEAN",
        "artifact_id": "VARCHAR",
        "created_at": "TIMESTAMP WITH TIME ZONE",
        "download_count": "BIGINT",
        "framework": "VARCHAR",
        "is_public": "BOOLEAN",
        "origin": "VARCHAR",
        "extra": "VARCHAR",
        "file_size_bytes": "BIGINT",
        "license": "VARCHAR",
        "task": "VARCHAR",
        "tags": "VARCHAR[]",
        "pretty_name": "VARCHAR",
        "summary": "VARCHAR",
        "architecture": "VARCHAR",
        "base_model": "VARCHAR",
        "size_category": "VARCHAR",
        "language": "VARCHAR[]",
        "task_categories": "VARCHAR[]",
        "aliases": "VARCHAR[]",
        "version_count": "INTEGER",
        "updated_at": "TIMESTAMP WITH TIME ZONE",
        "snapshot_date": "DATE",
    }
    frame = pd.read_parquet(tmp_path / "out" / "model_versions", dtype_backend="numpy_nullable")
    assert str(frame["download_count"].dtype) == "Int64"
    assert str(frame["version_rank"].dtype) == "Int32"
    assert str(frame["is_latest"].dtype) == "boolean"
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert str(frame["file_size_bytes"].dtype) == "Int64"
    assert str(frame["version_count"].dtype) == "Int32"
    assert str(frame["updated_at"].dtype) == "datetime64[us, UTC]"
    # strings shape, no detail: only the latest row carries a count; the rest are null, never 0
    latest = frame[frame["is_latest"]]
    assert latest["download_count"].notna().all()
    assert frame[~frame["is_latest"]]["download_count"].isna().all()


def test_rerun_replaces_only_its_date(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(versions_shape="objects")
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.yaml", config_document(registry, out))
    assert run_extract(config, "--date", DAY1).exit_code == 0
    assert run_extract(config, "--date", DAY2).exit_code == 0
    day2_dir = out / "model_versions" / f"snapshot_date={DAY2}"
    day2_before = file_hashes(day2_dir)
    day1_dir = out / "model_versions" / f"snapshot_date={DAY1}"
    day1_before = file_hashes(day1_dir)

    registry.set_day(3)
    assert run_extract(config, "--date", DAY1).exit_code == 0
    assert file_hashes(day2_dir) == day2_before
    # One data file per partition, replaced whole under its name, with its manifest.
    assert sorted(file_hashes(day1_dir)) == ["_manifest.json", "part-00000.parquet"]
    assert all(file_hashes(day1_dir)[name] != day1_before[name] for name in day1_before)
    assert project(dataset_rows(out, DAY1)) == project(expected(registry, 3))
    assert sorted(p.name for p in (out / "model_versions").iterdir()) == [
        f"snapshot_date={DAY1}",
        f"snapshot_date={DAY2}",
    ]
    assert not any((out / "_staging").iterdir())


def test_manifest_records_the_run(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(models_per_org=5)
    faults = FaultPlan(not_found=frozenset({"org-01/model-0002"}))
    registry.set_faults(faults)
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.yaml", config_document(registry, out))
    result = run_extract(config, "--date", DAY1)
    # 9 of 10 succeeded: exactly the default 90% publish threshold, so it publishes, partially
    assert result.exit_code == 3, result.output
    partition = out / "model_versions" / f"snapshot_date={DAY1}"
    manifest = json.loads((partition / "_manifest.json").read_text())
    assert manifest["snapshot_date"] == DAY1
    assert manifest["schema_version"] == 3
    assert manifest["targets"] == {"attempted": 10, "succeeded": 9, "failed": 1}
    assert manifest["rows"] == len(dataset_rows(out))
    assert manifest["files"] == sorted(p.name for p in partition.glob("*.parquet"))
    assert manifest["failures"] == [
        {
            "org": "org-01",
            "model": "model-0002",
            "status": 404,
            "error_type": "not_found",  # the connector's word
            "server_error_type": "not_found_error",  # the registry's envelope type, beside it
            "detail": manifest["failures"][0]["detail"],
            "attempts": 1,
        }
    ]
    assert manifest["failures"][0]["detail"]
    started = datetime.fromisoformat(manifest["started_at"])
    assert started <= datetime.fromisoformat(manifest["finished_at"])
    assert set(manifest) >= {"run_id", "connector_version", "requests"}
    assert sorted(p.name for p in partition.iterdir() if not p.name.endswith(".parquet")) == [
        "_manifest.json"
    ]
    assert "FAILED org-01/model-0002: HTTP 404 not_found (server: not_found_error)" in result.stdout


def test_summary_json_and_metrics_file(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator()
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    metrics = tmp_path / "connector.prom"
    result = run_extract(
        config, "--date", DAY1, "--summary-format", "json", "--metrics-file", str(metrics)
    )
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 0
    assert summary["targets"] == {"attempted": 6, "succeeded": 6, "failed": 0}
    assert summary["rows"] == len(registry.expected_rows(1))
    details = sum(1 for row in registry.expected_rows(1) if not row["is_latest"])
    assert details > 0  # strings shape: every version but the latest needs its detail
    assert summary["requests"] == {"200": 6 + details}
    assert summary["requests_by_operation"] == {
        "listModelVersions": 6,
        "getModelVersion": details,
    }
    samples = prom_samples(metrics.read_text())
    output = str(tmp_path / "out")
    assert samples[prom_key("targets", output=output, outcome="succeeded")] == 6
    assert samples[prom_key("targets", output=output, outcome="failed")] == 0
    assert samples[prom_key("rows", output=output)] == summary["rows"]
    assert prom_key("last_success_timestamp_seconds", output=output) in samples
    assert samples[prom_key("requests", output=output, status="200")] == 6 + details


def test_a_run_in_the_callers_process_gives_its_garbage_collector_back(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    """The command freezes what exists before the run (fewer objects for the run's collections
    to walk) and collects less often during it, and gives both back after: a caller running it
    in its own process (a test, an orchestrator's worker) keeps its collector as it was."""
    registry = start_simulator()
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    thresholds = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    assert run_extract(config, "--date", DAY1).exit_code == 0
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


def test_unset_token_variable_is_a_config_error(
    start_simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODEL_REGISTRY_TOKEN", raising=False)
    registry = start_simulator()
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    result = run_extract(config)
    assert result.exit_code == 2
    assert "registry.token: environment variable MODEL_REGISTRY_TOKEN is not set" in result.stderr
    assert registry.stats().requests == 0
