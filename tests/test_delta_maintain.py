"""A Delta dataset over time: a publish killed at its commit, and `connector maintain`
(compaction and vacuum) with its trade-off: files that time travel needs are gone after it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from delta_tables import deltalake_counts, expected_counts, open_delta
from helpers import TOKEN, config_document, write_config
from s3_objects import DAY1, DAY2, keys, kill_when

from connector import extract
from connector.cli import main
from connector.config import parse_config
from connector.dataset.locate import open_store
from connector.dataset.reader import read_manifest
from connector.dataset.store import Store
from connector.errors import ExitCode
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
ENV = {"MODEL_REGISTRY_TOKEN": TOKEN}


def table_files(store: Store) -> set[str]:
    """Every data file under the table's directory, referenced or not."""
    found = set()
    for entry in store.list("model_versions"):
        if entry.kind == "dir" and entry.name.startswith("snapshot_date="):
            found |= {
                f"{entry.name}/{child.name}"
                for child in store.list(f"model_versions/{entry.name}")
                if child.name.endswith(".parquet")
            }
    return found


@pytest.mark.slow
def test_a_publish_killed_at_its_commit_leaves_the_previous_version(
    start_simulator: StartSimulator, s3_server: Any, s3_bucket: str, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="objects")
    uri = f"s3://{s3_bucket}/lake"
    document = config_document(registry, uri, output_settings={"format": "delta"})
    store = open_store(uri)
    assert extract(parse_config(document, ENV), DAY1, allow_backdate=True).exit_code == 0
    before = deltalake_counts(store)

    registry.set_day(4)
    config = write_config(tmp_path / "c.yaml", document)

    def commit_put(env: dict[str, Any]) -> bool:  # the next log entry: the commit itself
        return env["REQUEST_METHOD"] == "PUT" and env["PATH_INFO"].endswith(
            "/model_versions/_delta_log/00000000000000000001.json"
        )

    kill_when(
        s3_server,
        commit_put,
        "extract",
        "--config",
        str(config),
        "--date",
        "2026-01-01",
        "--allow-backdate",
    )

    assert open_delta(store).version() == 0
    assert deltalake_counts(store) == before  # the killed run's rows are in no version
    orphans = table_files(store) - {f.removeprefix("model_versions/") for f in _current(store)}
    assert orphans, "the killed run had written its data file before the commit"
    assert keys(s3_bucket, "lake/_staging")  # its journal: the next run checks it

    following = extract(parse_config(document, ENV), DAY2, allow_backdate=True)
    assert following.exit_code == ExitCode.OK
    assert not keys(s3_bucket, "lake/_staging")
    assert read_manifest(store, DAY1)["rows"] == len(before)

    # maintain --vacuum-days 0 removes what no version references (the killed run's file).
    result = CliRunner().invoke(main, ["maintain", "--config", str(config), "--vacuum-days", "0"])
    assert result.exit_code == 0, result.output
    assert not orphans & table_files(store)


def _current(store: Store) -> list[str]:
    from connector.dataset.reader import data_files, snapshot_dates

    return [f.path for f in data_files(store, snapshot_dates(store))]


def test_maintain_compacts_and_vacuums_and_time_travel_stops_there(
    start_simulator: StartSimulator, store: Store, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="objects")
    document = config_document(registry, store.uri, output_settings={"format": "delta"})
    config = parse_config(document, ENV)
    for sim_day in (1, 2, 3):  # three publishes of one day: two files only time travel reads
        registry.set_day(sim_day)
        assert extract(config, date(2026, 1, 1), allow_backdate=True).exit_code == 0
    current = deltalake_counts(store)
    assert current == expected_counts(registry, 3, date(2026, 1, 1))
    assert len(table_files(store)) == 3
    path = write_config(tmp_path / "c.yaml", document)

    result = CliRunner().invoke(
        main,
        [
            "maintain",
            "--config",
            str(path),
            "--optimize",
            "--vacuum-days",
            "0",
            "--summary-format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    assert done["vacuum"] == {"files_removed": 2, "retention_days": 0}  # the replaced files
    assert done["optimize"] == {"files_added": 0, "files_removed": 0}  # one file a day already
    assert deltalake_counts(store) == current
    assert len(table_files(store)) == 1
    manifest = read_manifest(store, date(2026, 1, 1))  # kept: it lives outside the table
    assert manifest is not None and manifest["rows"] == len(current)
    with pytest.raises(OSError):  # the first publish's file is gone: no time travel to it
        deltalake_counts(store, 0)


@pytest.mark.parametrize(
    ("arguments", "output", "message"),
    [
        ([], {"format": "delta"}, "nothing to do"),
        (["--optimize"], {}, "maintain works on a Delta table"),
        (["--vacuum-days", "-1"], {"format": "delta"}, "--vacuum-days must be 0 or more"),
    ],
)
def test_maintain_refuses_what_it_cannot_do(
    tmp_path: Path, arguments: list[str], output: dict[str, Any], message: str
) -> None:
    document = {"output": {"uri": str(tmp_path / "out"), **output}}
    path = write_config(tmp_path / "c.yaml", document)
    result = CliRunner().invoke(main, ["maintain", "--config", str(path), *arguments])
    assert result.exit_code == ExitCode.CONFIG
    assert message in result.output
