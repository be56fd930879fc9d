"""A dataset holding v1, v2 and v3 partitions side by side stays readable by every consumer
that runs here: `connector report`, `load_snapshots`, and the DuckDB, pandas and polars recipes,
read from docs/querying.md and run as written (paths aside)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from helpers import docs_block, run_docs_duckdb, run_docs_python

from connector import load_snapshots, report
from connector.cli import main
from connector.dataset.schema import FILE_SCHEMA, SCHEMA_VERSION

V2_COLUMNS = ("file_size_bytes", "license", "task", "tags")
V3_COLUMNS = (
    "pretty_name",
    "summary",
    "architecture",
    "base_model",
    "size_category",
    "language",
    "task_categories",
    "aliases",
    "version_count",
    "updated_at",
)
# A week apart: the recipes' window (the latest snapshot against the one 7 days older), with
# a v2 partition between them.
START, MIDDLE, END = "2026-11-22", "2026-11-25", "2026-11-29"


def old_schema(version: int) -> pa.Schema:
    """The file schema of an older version: the current one without the later columns."""
    later = V3_COLUMNS + (V2_COLUMNS if version == 1 else ())
    fields = [field for field in FILE_SCHEMA if field.name not in later]
    return pa.schema(fields, metadata={b"connector.schema_version": str(version).encode()})


def test_each_version_only_appended_columns() -> None:
    """Files merge by name only if no column moved: v1 is a prefix of v2, v2 of v3."""
    names = FILE_SCHEMA.names
    assert old_schema(1).names == names[: len(old_schema(1))]
    assert old_schema(2).names == names[: len(old_schema(2))]
    assert names[len(old_schema(2)) :] == list(V3_COLUMNS)


def write_partition(root: Path, day: str, schema: pa.Schema, rows: list[dict[str, Any]]) -> None:
    directory = root / "model_versions" / f"snapshot_date={day}"
    directory.mkdir(parents=True)
    base = {
        "extracted_at": datetime.fromisoformat(day).replace(tzinfo=UTC),
        "org": "acme",
        "is_latest": False,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    table = pa.Table.from_pylist(
        [{**base, "model_name": f"acme/{r['model']}", **r} for r in rows], schema=schema
    )
    pq.write_table(table, directory / "part-run-00000.parquet")


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """v1 at the start date, v2 (with detail columns) in the middle, v3 (the whole summary)
    at the end date."""
    write_partition(
        tmp_path,
        START,
        old_schema(1),
        [
            {"model": "a", "version": "1.0", "download_count": 100},
            {"model": "b", "version": "2.0", "download_count": 10},
        ],
    )
    write_partition(
        tmp_path,
        MIDDLE,
        old_schema(2),
        [
            {"model": "a", "version": "1.0", "download_count": 130, "license": "mit"},
            {"model": "b", "version": "2.0", "download_count": 12},
        ],
    )
    write_partition(
        tmp_path,
        END,
        FILE_SCHEMA,
        [
            {
                "model": "a",
                "version": "1.0",
                "download_count": 160,
                "file_size_bytes": 2**40,
                "version_count": 3,
                "language": ["en", "de"],
                "updated_at": datetime(2026, 11, 28, 6, tzinfo=UTC),
            },
            {"model": "b", "version": "2.0", "download_count": 15, "tags": ["nlp"]},
        ],
    )
    return tmp_path


def gains(frame: pd.DataFrame) -> list[tuple[str, int]]:
    return [
        (str(m), int(g)) for m, g in zip(frame["model"], frame["downloads_gained"], strict=True)
    ]


def test_the_files_say_which_schema_version_they_hold(mixed: Path) -> None:
    versions = [
        pq.read_schema(path).metadata[b"connector.schema_version"]
        for path in sorted(mixed.rglob("*.parquet"))
    ]
    assert versions == [b"1", b"2", str(SCHEMA_VERSION).encode()] == [b"1", b"2", b"3"]


def test_load_snapshots_reads_older_rows_with_null_newer_columns(mixed: Path) -> None:
    frame = load_snapshots(mixed).sort_values(["snapshot_date", "model"]).reset_index(drop=True)
    assert list(frame.columns) == ["snapshot_date", *FILE_SCHEMA.names]
    assert frame["download_count"].tolist() == [100, 10, 130, 12, 160, 15]
    assert frame["file_size_bytes"].dtype == pd.Int64Dtype()
    assert frame["file_size_bytes"].isna().tolist() == [True] * 4 + [False, True]
    assert int(frame["file_size_bytes"].iloc[4]) == 2**40
    assert frame["tags"].iloc[0] is None and list(frame["tags"].iloc[5]) == ["nlp"]
    assert frame["license"].isna().tolist()[:3] == [True, True, False]
    assert frame["license"].iloc[2] == "mit"
    assert frame["version_count"].dtype == pd.Int32Dtype()
    assert frame["version_count"].isna().tolist() == [True] * 4 + [False, True]
    assert int(frame["version_count"].iloc[4]) == 3
    assert list(frame["language"].iloc[4]) == ["en", "de"] and frame["language"].iloc[2] is None
    assert frame["updated_at"].iloc[4] == pd.Timestamp("2026-11-28 06:00", tz="UTC")
    assert frame["updated_at"].isna().tolist() == [True] * 4 + [False, True]


def test_connector_report_reads_a_mixed_dataset(mixed: Path) -> None:
    assert gains(report(mixed, start=date.fromisoformat(START), end=date.fromisoformat(END))) == [
        ("a", 60),
        ("b", 5),
    ]
    result = CliRunner().invoke(main, ["report", "--data", str(mixed), "--days", "7"])
    assert result.exit_code == 0, result.output
    assert "acme" in result.output


def on_mixed(code: str, mixed: Path) -> str:
    return code.replace("data/model_versions", f"{mixed}/model_versions")


def test_the_duckdb_recipe_reads_a_mixed_dataset(mixed: Path) -> None:
    sql = on_mixed(docs_block("duckdb"), mixed)
    assert "union_by_name = true" in sql
    assert gains(run_docs_duckdb(sql)) == [("a", 60), ("b", 5)]
    columns = duckdb.sql(
        "SELECT tags, file_size_bytes, license, version_count, language FROM "
        f"read_parquet('{mixed}/model_versions/*/*.parquet', "
        "hive_partitioning = true, union_by_name = true) ORDER BY snapshot_date, model"
    ).fetchall()
    assert columns == [
        (None, None, None, None, None),
        (None, None, None, None, None),
        (None, None, "mit", None, None),
        (None, None, None, None, None),
        (None, 2**40, None, 3, ["en", "de"]),
        (["nlp"], None, None, None, None),
    ]


@pytest.mark.parametrize("name", ["pandas", "polars"])
def test_the_python_recipes_read_a_mixed_dataset(name: str, mixed: Path) -> None:
    assert gains(run_docs_python(name, on_mixed(docs_block(name), mixed))) == [("a", 60), ("b", 5)]


def test_the_detail_columns_need_the_schema_in_pyarrow_and_get_it_from_the_recipe(
    mixed: Path,
) -> None:
    """Without the schema, pyarrow takes the first (v1) file's: the reason the pandas recipe
    passes `schema=connector.DATASET_SCHEMA`."""
    assert "schema=connector.DATASET_SCHEMA" in docs_block("pandas")
    from connector import DATASET_SCHEMA

    with pytest.raises(pa.ArrowInvalid, match="file_size_bytes"):
        pd.read_parquet(mixed / "model_versions", columns=["file_size_bytes"])
    frame = pd.read_parquet(
        mixed / "model_versions", schema=DATASET_SCHEMA, columns=["file_size_bytes"]
    )
    assert sorted(frame["file_size_bytes"].dropna().astype("int64").tolist()) == [2**40]
