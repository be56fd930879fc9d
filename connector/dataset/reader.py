"""Read the published snapshot dataset: partition dates, manifests and rows, scanning only what a
question needs.

Only directories named `snapshot_date=YYYY-MM-DD` count as partitions, and only `*.parquet` files
in them (not starting with `_` or `.`) as data: `_manifest.json`, a stray temp file or a folder
that is not `key=value` must never break a read. The partition list comes from directory names
alone, so finding the window of a report costs one listing; the rows are then read from the
in-window partitions only (a corrupt file in another partition is never opened) and only for the
requested columns.

`uri` is what the extractor's `output.uri` accepts: a local path, a `file://` URI or
`s3://bucket/prefix` (with `storage_options` as in `output.storage_options`), or a Location from
`connector.dataset.storage.locate`. Everything goes through that Location's pyarrow filesystem.
On object storage a partition's one data object can be replaced while a read is in flight; the
loader compares each object's size and modification time before and after and reads again when
they moved, so it never returns a torn or mixed read (`connector.dataset.writer` owns the
layout; this module only reads it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from connector.dataset.layout import DATASET_DIR
from connector.dataset.schema import DATASET_SCHEMA, PARTITION_COLUMN, to_dataframe
from connector.dataset.storage import STORAGE_ERRORS, Location, list_entries, locate, read_bytes
from connector.dataset.writer import MANIFEST_NAME
from connector.errors import ConfigError, OutputError

Source = str | os.PathLike[str] | Location

_PARTITION_DIR = re.compile(rf"^{PARTITION_COLUMN.name}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_HIVE = ds.partitioning(
    pa.schema([pa.field(PARTITION_COLUMN.name, PARTITION_COLUMN.type)]), flavor="hive"
)
_READ_ATTEMPTS = 3


def _list_dir(location: Location, path: str) -> list[pafs.FileInfo]:
    try:
        return list_entries(location.filesystem, path)
    except STORAGE_ERRORS as exc:
        raise OutputError(f"cannot list {location.display(path)}: {exc}") from exc


def _partition_date(name: str) -> date | None:
    match = _PARTITION_DIR.match(name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:  # e.g. snapshot_date=2024-02-30
        return None


def _partition(location: Location, day: date) -> str:
    return location.join(DATASET_DIR, f"{PARTITION_COLUMN.name}={day.isoformat()}")


def snapshot_dates(uri: Source, storage_options: Mapping[str, Any] | None = None) -> list[date]:
    """Every published snapshot date, sorted; from directory names only, so it stays cheap."""
    location = locate(uri, storage_options)
    days = {
        day
        for info in _list_dir(location, location.join(DATASET_DIR))
        if info.type == pafs.FileType.Directory
        and (day := _partition_date(info.base_name)) is not None
    }
    return sorted(days)


def data_files(location: Location, days: Sequence[date]) -> list[pafs.FileInfo]:
    """The `*.parquet` files of the given partitions (never manifests, temp or hidden files)."""
    return sorted(
        (
            info
            for day in days
            for info in _list_dir(location, _partition(location, day))
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith(("_", "."))
        ),
        key=lambda info: info.path,
    )


def _fingerprint(files: Sequence[pafs.FileInfo]) -> list[tuple[str, int | None, Any]]:
    return [(info.path, info.size, info.mtime) for info in files]


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
    uri: Source,
    start: date | None = None,
    end: date | None = None,
    columns: Sequence[str] | None = None,
    orgs: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Rows of the snapshots dated `start`..`end` (inclusive, either open), as nullable dtypes.

    Partitions outside the window are pruned by directory name before any file is opened;
    `orgs`/`models` filters are pushed down to the Parquet reader. A missing or empty dataset
    gives an empty frame with the requested columns.
    """
    selected = _check_columns(columns)
    location = locate(uri, storage_options)
    days = [
        day
        for day in snapshot_dates(location)
        if (start is None or day >= start) and (end is None or day <= end)
    ]
    files = data_files(location, days)
    for _ in range(_READ_ATTEMPTS):
        if not files:
            return to_dataframe(DATASET_SCHEMA.empty_table().select(selected))
        table = _read(location, files, selected, _row_filter(orgs, models))
        if location.is_local:  # a swapped-in directory never changes an open file
            return to_dataframe(table)
        again = data_files(location, days)
        if _fingerprint(again) == _fingerprint(files):
            return to_dataframe(table)
        files = again  # a publish replaced an object during the read: read the new one
    raise OutputError(
        f"the dataset under {location.display(location.join(DATASET_DIR))} kept changing "
        f"during {_READ_ATTEMPTS} reads; try again"
    )


def _read(
    location: Location, files: Sequence[pafs.FileInfo], selected: list[str], row_filter: Any
) -> pa.Table:
    base = location.join(DATASET_DIR)
    try:
        dataset = ds.dataset(
            [info.path for info in files],
            schema=DATASET_SCHEMA,
            format="parquet",
            filesystem=location.filesystem,
            partitioning=_HIVE,
            partition_base_dir=base,
        )
        return dataset.to_table(columns=selected, filter=row_filter)
    except (pa.ArrowException, OSError) as exc:
        raise OutputError(f"cannot read the dataset under {location.display(base)}: {exc}") from exc


def read_manifest(
    uri: Source, day: date, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The manifest of one snapshot, or None when that snapshot has none.

    Locally `_manifest.json` moved in with the data. On object storage the data object's footer
    holds the manifest that belongs to it; `_manifest.json` is only the fallback there.
    """
    location = locate(uri, storage_options)
    partition = _partition(location, day)
    if not location.is_local:
        from connector.dataset.objectstore import DATA_NAME, read_footer_manifest

        try:
            embedded = read_footer_manifest(location.filesystem, f"{partition}/{DATA_NAME}")
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot read {location.display(partition)}: {exc}") from exc
        if embedded is not None:
            return embedded
    path = location.display(f"{partition}/{MANIFEST_NAME}")
    try:
        raw = read_bytes(location.filesystem, f"{partition}/{MANIFEST_NAME}")
    except STORAGE_ERRORS as exc:
        raise OutputError(f"cannot read {path}: {exc}") from exc
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise OutputError(f"{path} does not hold a JSON object")
    return manifest
