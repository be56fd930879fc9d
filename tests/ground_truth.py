"""The published dataset read back as a user would (DuckDB), and the simulator's ground truth
to compare it with: shared by every end-to-end test that checks rows."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

import duckdb

from connector.simulator.catalog import RICH_FIELDS
from connector.simulator.server import SimulatedRegistry

DAY1, DAY2 = "2026-01-01", "2026-01-02"
COMPARED = [
    "org",
    "model",
    "model_name",
    "version",
    "version_rank",
    "is_latest",
    "artifact_id",
    "created_at",
    "download_count",
    "framework",
    "is_public",
    "origin",
    "file_size_bytes",
    *RICH_FIELDS,  # license, task, tags and the rest of the summary (schema v3)
]


def dataset_rows(output: Path, day: str | None = None) -> list[dict[str, Any]]:
    """Every row, read by DuckDB exactly as a user would, in ground-truth order."""
    where = f"WHERE snapshot_date = DATE '{day}'" if day else ""
    relation = duckdb.sql(
        f"SELECT * FROM read_parquet('{output}/model_versions/*/*.parquet', "
        f"hive_partitioning=true) {where} ORDER BY org, model, version_rank NULLS LAST, version"
    )
    columns = relation.columns
    rows = [dict(zip(columns, values, strict=True)) for values in relation.fetchall()]
    for row in rows:
        row["origin"] = json.loads(row["origin"]) if row["origin"] is not None else None
        for column in ("created_at", "updated_at"):
            if row[column] is not None:
                row[column] = row[column].astimezone(UTC)
    return rows


def store_rows(store: Any) -> list[dict[str, Any]]:
    """Every row of a dataset on any store, read by DuckDB through a pyarrow dataset on the
    store's own filesystem (no DuckDB extension), normalised as `dataset_rows`."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(
        store.native("model_versions"),
        filesystem=store.filesystem,
        format="parquet",
        partitioning="hive",
    )
    relation = duckdb.from_arrow(dataset).order("org, model, version_rank NULLS LAST, version")
    rows = [dict(zip(relation.columns, values, strict=True)) for values in relation.fetchall()]
    for row in rows:
        row["origin"] = json.loads(row["origin"]) if row["origin"] is not None else None
        if row["created_at"] is not None:
            row["created_at"] = row["created_at"].astimezone(UTC)
    return rows


def expected(
    registry: SimulatedRegistry, day: int, version_detail: str = "missing"
) -> list[dict[str, Any]]:
    """The simulator's ground truth for `day`, in the order `dataset_rows` reads rows."""
    rows = registry.expected_rows(day, version_detail)
    return sorted(
        rows,
        key=lambda r: (r["org"], r["model"], r["version_rank"] or 10**9, r["version"]),
    )


def project(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Only the columns the ground truth knows (not extracted_at, extra, snapshot_date)."""
    return [{k: row[k] for k in COMPARED} for row in rows]
