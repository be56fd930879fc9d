"""Reading the published dataset: partition and column pruning, filters, junk that must be
ignored. The files are written by tests/dataset_builders.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dataset_builders import D, V, file_table, write_snapshot

from connector.dataset.reader import load_snapshots, read_manifest, snapshot_dates
from connector.dataset.schema import DATASET_SCHEMA
from connector.errors import ConfigError, OutputError


def test_snapshot_dates_come_from_partition_directories_only(tmp_path: Path) -> None:
    write_snapshot(tmp_path, "2024-01-03", [V("acme", "a", "1.0", 1)])
    write_snapshot(tmp_path, "2024-01-01", [V("acme", "a", "1.0", 1)])
    dataset = tmp_path / "model_versions"
    for junk in ("snapshot_date=garbage", "snapshot_date=2024-02-30", "tmp", ".hidden"):
        (dataset / junk).mkdir()
    (dataset / "snapshot_date=2024-01-05").write_text("a file, not a partition")
    (tmp_path / "_staging" / "snapshot_date=2024-01-09").mkdir(parents=True)

    assert snapshot_dates(tmp_path) == [D("2024-01-01"), D("2024-01-03")]
    assert snapshot_dates(f"file://{tmp_path}") == [D("2024-01-01"), D("2024-01-03")]


def test_missing_or_empty_dataset_gives_an_empty_typed_frame(tmp_path: Path) -> None:
    assert snapshot_dates(tmp_path / "nowhere") == []
    frame = load_snapshots(tmp_path / "nowhere", columns=["snapshot_date", "download_count"])
    assert list(frame.columns) == ["snapshot_date", "download_count"]
    assert frame.empty
    assert str(frame["download_count"].dtype) == "Int64"

    (tmp_path / "model_versions" / "snapshot_date=2024-01-01").mkdir(parents=True)
    assert list(load_snapshots(tmp_path).columns) == DATASET_SCHEMA.names


def test_load_reads_the_window_with_nullable_dtypes(tmp_path: Path) -> None:
    for day, count in (("2024-01-01", 10), ("2024-01-02", None), ("2024-01-03", 30)):
        write_snapshot(tmp_path, day, [V("acme", "a", "1.0", count, created=None)])

    frame = load_snapshots(tmp_path, start=D("2024-01-02"), end=D("2024-01-03"))

    assert list(frame.columns) == DATASET_SCHEMA.names
    assert frame["snapshot_date"].tolist() == [
        pd.Timestamp("2024-01-02"),
        pd.Timestamp("2024-01-03"),
    ]
    assert frame["download_count"].tolist() == [pd.NA, 30]
    assert str(frame["download_count"].dtype) == "Int64"
    assert str(frame["is_latest"].dtype) == "boolean"
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    assert str(frame["extracted_at"].dtype) == "datetime64[us, UTC]"
    assert frame["created_at"].isna().all()
    assert len(load_snapshots(tmp_path, start=D("2024-01-02"))) == 2
    assert len(load_snapshots(tmp_path, end=D("2024-01-01"))) == 1


def test_a_corrupt_file_outside_the_window_is_never_opened(tmp_path: Path) -> None:
    """Partition pruning: the corrupt partition is skipped by the date filter, read otherwise."""
    write_snapshot(tmp_path, "2024-01-02", [V("acme", "a", "1.0", 20)])
    write_snapshot(tmp_path, "2024-01-03", [V("acme", "a", "1.0", 30)])
    broken = write_snapshot(tmp_path, "2024-01-01", [V("acme", "a", "1.0", 10)])
    (broken / "part-00000.parquet").write_bytes(b"PAR1 this is not parquet at all")

    frame = load_snapshots(tmp_path, start=D("2024-01-02"))
    assert frame["download_count"].tolist() == [20, 30]

    with pytest.raises(OutputError, match="cannot read the dataset"):
        load_snapshots(tmp_path)


def test_only_the_requested_columns_are_read(tmp_path: Path) -> None:
    """Column pruning: a column whose stored type cannot be read breaks only reads that ask."""
    partition = write_snapshot(tmp_path, "2024-01-01", [V("acme", "a", "1.0", 10)])
    table = file_table(D("2024-01-01"), [V("acme", "a", "1.0", 10)])
    odd = table.set_column(
        table.schema.get_field_index("origin"), "origin", pa.array([{"nested": 1}])
    )
    pq.write_table(odd, partition / "part-00000.parquet")

    frame = load_snapshots(tmp_path, columns=["snapshot_date", "org", "download_count"])
    assert list(frame.columns) == ["snapshot_date", "org", "download_count"]
    assert frame["download_count"].tolist() == [10]
    with pytest.raises(OutputError):
        load_snapshots(tmp_path)


def test_manifests_temp_and_foreign_files_are_not_data(tmp_path: Path) -> None:
    partition = write_snapshot(tmp_path, "2024-01-01", [V("acme", "a", "1.0", 10)])
    (partition / "notes.txt").write_text("not parquet")
    (partition / "_SUCCESS").write_text("")
    (partition / ".part-00001.parquet").write_bytes(b"half-written")
    (partition / "_part-00002.parquet").write_bytes(b"not data either")
    (partition / "part-00003.parquet.tmp").write_bytes(b"nor this")
    (partition / "nested").mkdir()
    staging = tmp_path / "_staging" / "run-1"
    staging.mkdir(parents=True)
    (staging / "part-00000.parquet").write_bytes(b"outside the dataset")

    assert load_snapshots(tmp_path)["download_count"].tolist() == [10]


def test_several_part_files_and_filters(tmp_path: Path) -> None:
    write_snapshot(tmp_path, "2024-01-01", [V("acme", "a", "1.0", 1), V("acme", "b", "1.0", 2)])
    write_snapshot(
        tmp_path, "2024-01-01", [V("globex", "a", "1.0", 3)], name="part-shard-1.parquet"
    )

    assert len(load_snapshots(tmp_path)) == 3
    assert load_snapshots(tmp_path, orgs=["globex"])["download_count"].tolist() == [3]
    assert sorted(load_snapshots(tmp_path, models=["a"])["download_count"]) == [1, 3]
    only = load_snapshots(tmp_path, orgs=["acme"], models=["a"], columns=["download_count"])
    assert only["download_count"].tolist() == [1]


def test_unknown_columns_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown column 'downloads'"):
        load_snapshots(tmp_path, columns=["org", "downloads"])


def test_read_manifest(tmp_path: Path) -> None:
    failure = {"org": "acme", "model": "b", "status": 500, "error_type": "server_error"}
    partition = write_snapshot(
        tmp_path, "2024-01-01", [V("acme", "a", "1.0", 1)], failures=[failure]
    )

    manifest = read_manifest(tmp_path, D("2024-01-01"))
    assert manifest is not None
    assert manifest["targets"] == {"attempted": 2, "succeeded": 1, "failed": 1}
    assert manifest["failures"][0]["model"] == "b"
    assert read_manifest(tmp_path, D("2024-01-02")) is None

    (partition / "_manifest.json").write_text("{not json")
    with pytest.raises(OutputError, match="not valid JSON"):
        read_manifest(tmp_path, D("2024-01-01"))
