"""A small dataset builder for the reader, report and render tests: they write Parquet files
into the published layout themselves (`V`, `write_snapshot`, `daily_dataset`), and
`report_over` computes the report over a few snapshots written to a temporary dataset."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connector.dataset.locate import open_store as locate
from connector.dataset.schema import FILE_SCHEMA
from connector.reporting.analytics import Report, compute_report

D = date.fromisoformat


@dataclass(frozen=True)
class V:
    """One version row of a snapshot; everything the reports do not look at gets a default."""

    org: str
    model: str
    version: str
    count: int | None
    created: str | None = "2023-01-01T00:00:00"
    framework: str | None = "pytorch"


def _timestamp(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def file_table(day: date, versions: Sequence[V]) -> pa.Table:
    """A table conforming to FILE_SCHEMA, as the extractor writes one part file."""
    fetched = datetime(day.year, day.month, day.day, 6, tzinfo=UTC)
    columns: dict[str, list[Any]] = {
        "extracted_at": [fetched] * len(versions),
        "org": [v.org for v in versions],
        "model": [v.model for v in versions],
        "model_name": [f"{v.org}/{v.model}" for v in versions],
        "version": [v.version for v in versions],
        "version_rank": [i + 1 for i in range(len(versions))],
        "is_latest": [i == 0 for i in range(len(versions))],
        "artifact_id": [None] * len(versions),
        "created_at": [_timestamp(v.created) for v in versions],
        "download_count": [v.count for v in versions],
        "framework": [v.framework for v in versions],
        "is_public": [True] * len(versions),
        "origin": [None] * len(versions),
        "extra": [None] * len(versions),
    }
    for name in FILE_SCHEMA.names:  # the v2 detail columns: null, as without version detail
        columns.setdefault(name, [None] * len(versions))
    return pa.Table.from_pydict(columns, schema=FILE_SCHEMA)


def write_snapshot(
    root: Path,
    day: date | str,
    versions: Sequence[V],
    *,
    failures: Sequence[Mapping[str, Any]] = (),
    name: str = "part-00000.parquet",
) -> Path:
    """Write one snapshot partition (a part file and its manifest) in the published layout."""
    day = D(day) if isinstance(day, str) else day
    partition = root / "model_versions" / f"snapshot_date={day.isoformat()}"
    partition.mkdir(parents=True, exist_ok=True)
    pq.write_table(file_table(day, versions), partition / name)
    manifest = {
        "run_id": f"run-{day.isoformat()}",
        "snapshot_date": day.isoformat(),
        "targets": {
            "attempted": len({(v.org, v.model) for v in versions}) + len(failures),
            "succeeded": len({(v.org, v.model) for v in versions}),
            "failed": len(failures),
        },
        "rows": len(versions),
        "files": [name],
        "failures": list(failures),
    }
    (partition / "_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return partition


def daily_dataset(root: Path, first: str, days: int, models: int = 3) -> list[date]:
    """A dataset with `days` daily snapshots; model i gains 100*(i+1) per day on version 1.0."""
    start = D(first)
    dates = [start + timedelta(days=i) for i in range(days)]
    for n, day in enumerate(dates):
        rows = [
            V("acme", f"model-{i}", "1.0", 1000 + n * 100 * (i + 1), framework=f"fw{i % 2}")
            for i in range(models)
        ]
        write_snapshot(root, day, rows)
    return dates


def report_over(snapshots: Mapping[str, Sequence[V]], **options: Any) -> Report:
    """`compute_report` over these snapshots, written to a temporary dataset first; the daily
    series is computed before the dataset is removed."""
    with tempfile.TemporaryDirectory() as folder:
        for day, versions in snapshots.items():
            write_snapshot(Path(folder), day, versions)
        result = compute_report(Path(folder), **options)
        assert result.daily is not None  # the chart's series, read while the files exist
    return result


def upload(local: Path, bucket: str, prefix: str) -> str:
    """Copy a local dataset into the bucket; returns its s3:// URI."""
    fs = locate(f"s3://{bucket}").filesystem
    for path in sorted(local.rglob("*")):
        if path.is_file():
            key = f"{bucket}/{prefix}/{path.relative_to(local).as_posix()}"
            with fs.open_output_stream(key) as stream:
                stream.write(path.read_bytes())
    return f"s3://{bucket}/{prefix}"
