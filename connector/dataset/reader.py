"""Read the published snapshot dataset: partition dates, manifests and rows, scanning only what a
question needs.

Only directories named `snapshot_date=YYYY-MM-DD` count as partitions, and only `*.parquet` files
in them (not starting with `_` or `.`) as data: `_manifest.json`, a stray temp file or a folder
that is not `key=value` must never break a read. The partition list comes from directory names
alone, so finding the window of a report costs one listing; the rows are then read from the
in-window partitions only (a corrupt file in another partition is never opened) and only for the
requested columns.

`uri` is what the extractor's `output.uri` accepts: a local path or a `file://` URI
(`connector.dataset.writer` owns the layout; this module only reads it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from connector.dataset.layout import DATASET_DIR
from connector.dataset.schema import DATASET_SCHEMA, PARTITION_COLUMN, to_dataframe
from connector.dataset.storage import local_root
from connector.dataset.writer import MANIFEST_NAME, partition_dir
from connector.errors import ConfigError, OutputError

_PARTITION_DIR = re.compile(rf"^{PARTITION_COLUMN.name}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_HIVE = ds.partitioning(
    pa.schema([pa.field(PARTITION_COLUMN.name, PARTITION_COLUMN.type)]), flavor="hive"
)


def _list_dir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(f"cannot list {path}: {exc}") from exc


def _partition_date(name: str) -> date | None:
    match = _PARTITION_DIR.match(name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:  # e.g. snapshot_date=2024-02-30
        return None


def snapshot_dates(uri: str | os.PathLike[str]) -> list[date]:
    """Every published snapshot date, sorted; from directory names only, so it stays cheap."""
    days = {
        day
        for entry in _list_dir(local_root(uri) / DATASET_DIR)
        if entry.is_dir() and (day := _partition_date(entry.name)) is not None
    }
    return sorted(days)


def _data_files(root: Path, days: Sequence[date]) -> list[str]:
    """The `*.parquet` files of the given partitions (never manifests, temp or hidden files)."""
    return sorted(
        entry.path
        for day in days
        for entry in _list_dir(partition_dir(root, day))
        if entry.is_file()
        and entry.name.endswith(".parquet")
        and not entry.name.startswith(("_", "."))
    )


def _check_columns(columns: Sequence[str] | None) -> list[str]:
    known = DATASET_SCHEMA.names
    if columns is None:
        return list(known)
    unknown = [name for name in columns if name not in known]
    if unknown:
        raise ConfigError(
            [f"unknown column {name!r} (known: {', '.join(known)})" for name in unknown]
        )
    return list(dict.fromkeys(columns))


def _row_filter(orgs: Sequence[str] | None, models: Sequence[str] | None) -> Any:
    expression = None
    for column, values in (("org", orgs), ("model", models)):
        if values:
            condition = ds.field(column).isin(list(values))
            expression = condition if expression is None else expression & condition
    return expression


def load_snapshots(
    uri: str | os.PathLike[str],
    start: date | None = None,
    end: date | None = None,
    columns: Sequence[str] | None = None,
    orgs: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Rows of the snapshots dated `start`..`end` (inclusive, either open), as nullable dtypes.

    Partitions outside the window are pruned by directory name before any file is opened;
    `orgs`/`models` filters are pushed down to the Parquet reader. A missing or empty dataset
    gives an empty frame with the requested columns.
    """
    selected = _check_columns(columns)
    root = local_root(uri)
    days = [
        day
        for day in snapshot_dates(uri)
        if (start is None or day >= start) and (end is None or day <= end)
    ]
    files = _data_files(root, days)
    if not files:
        return to_dataframe(DATASET_SCHEMA.empty_table().select(selected))
    try:
        dataset = ds.dataset(
            files,
            schema=DATASET_SCHEMA,
            format="parquet",
            partitioning=_HIVE,
            partition_base_dir=str(root / DATASET_DIR),
        )
        table = dataset.to_table(columns=selected, filter=_row_filter(orgs, models))
    except (pa.ArrowException, OSError) as exc:
        raise OutputError(f"cannot read the dataset under {root / DATASET_DIR}: {exc}") from exc
    return to_dataframe(table)


def read_manifest(uri: str | os.PathLike[str], day: date) -> dict[str, Any] | None:
    """The `_manifest.json` of one snapshot, or None when that snapshot has none."""
    path = partition_dir(local_root(uri), day) / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc}") from exc
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise OutputError(f"{path} does not hold a JSON object")
    return manifest
