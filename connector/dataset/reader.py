"""Read the published snapshot dataset: partition dates, manifests and rows, scanning only what a
question needs.

Only directories named `snapshot_date=YYYY-MM-DD` count as partitions, and only `*.parquet` files
in them (not starting with `_` or `.`) as data: `_manifest.json`, a stray temp file or a folder
that is not `key=value` must never break a read. A link inside the dataset is never followed: a
partition or data file that is a symbolic link is refused with an error naming it. The partition
list comes from directory names alone, so finding the window of a report costs one listing; the
rows are then read from the in-window partitions only (a corrupt file in another partition is
never opened) and only for the requested columns.

A Delta table (`output.format: delta`, `connector.dataset.delta`) is recognised by its log and
read through it: its days and files are those of the table's current version.

`uri` is what the extractor's `output.uri` accepts: a local path, a `file://` URI or
`s3://bucket/prefix` (with `storage_options` as in `output.storage_options`), or a Store.
On object storage a partition's one data object can be replaced while a read is in flight; the
loader compares each object's size and modification time before and after and reads again when
they moved, so it never returns a torn or mixed read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from connector.dataset import delta, partition
from connector.dataset.layout import DATASET_DIR, DataFile, partition_path
from connector.dataset.locate import open_store
from connector.dataset.schema import DATASET_SCHEMA, PARTITION_COLUMN, to_dataframe
from connector.dataset.store import STORAGE_ERRORS, Store
from connector.dates import as_day, as_optional_day
from connector.errors import ConfigError, OutputError

Source = str | os.PathLike[str] | Store

_PARTITION_DIR = re.compile(rf"^{PARTITION_COLUMN.name}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_HIVE = ds.partitioning(
    pa.schema([pa.field(PARTITION_COLUMN.name, PARTITION_COLUMN.type)]), flavor="hive"
)
_READ_ATTEMPTS = 3


def _partition_date(name: str) -> date | None:
    match = _PARTITION_DIR.match(name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:  # e.g. snapshot_date=2024-02-30
        return None


def _refuse_link(store: Store, path: str) -> OutputError:
    return OutputError(
        f"{store.display(path)} is a symbolic link; the dataset is read without following "
        "links (remove it, or copy the data in)"
    )


def snapshot_dates(uri: Source, storage_options: Mapping[str, Any] | None = None) -> list[date]:
    """Every published snapshot date, sorted; from directory names only, so it stays cheap
    (of a Delta table: from its log)."""
    store = open_store(uri, storage_options)
    if delta.is_table(store):
        return delta.snapshot_dates(store)
    days = []
    for entry in store.list(DATASET_DIR):
        day = _partition_date(entry.name)
        if day is None:
            continue
        if entry.kind == "link":
            raise _refuse_link(store, f"{DATASET_DIR}/{entry.name}")
        if entry.kind == "dir":
            days.append(day)
    return sorted(days)


def data_files(store: Store, days: Sequence[date]) -> list[DataFile]:
    """The `*.parquet` files of the given partitions, sorted by path (never manifests, temp or
    hidden files; a link is refused); of a Delta table, the files its current version holds."""
    if delta.is_table(store):
        return delta.data_files(store, list(days))
    found = []
    for day in days:
        directory = partition_path(day)
        for entry in store.list(directory):
            if not entry.name.endswith(".parquet") or entry.name.startswith(("_", ".")):
                continue
            path = f"{directory}/{entry.name}"
            if entry.kind == "link":
                raise _refuse_link(store, path)
            if entry.kind == "file":
                found.append(DataFile(path, day, entry.size, entry.mtime_ns))
    return sorted(found, key=lambda file: file.path)


def _fingerprint(files: Sequence[DataFile]) -> list[tuple[str, int | None, int | None]]:
    return [(file.path, file.size, file.mtime_ns) for file in files]


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
    start: date | str | None = None,
    end: date | str | None = None,
    columns: Sequence[str] | None = None,
    orgs: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Rows of the snapshots dated `start`..`end` (inclusive, either open; a `date` or
    `YYYY-MM-DD`), as nullable dtypes.

    Partitions outside the window are pruned by directory name before any file is opened;
    `orgs`/`models` filters are pushed down to the Parquet reader. A missing or empty dataset
    gives an empty frame with the requested columns.
    """
    first, last = as_optional_day(start, "start"), as_optional_day(end, "end")
    selected = _check_columns(columns)
    store = open_store(uri, storage_options)
    days = [
        day
        for day in snapshot_dates(store)
        if (first is None or day >= first) and (last is None or day <= last)
    ]
    files = data_files(store, days)
    for _ in range(_READ_ATTEMPTS):
        if not files:
            return to_dataframe(DATASET_SCHEMA.empty_table().select(selected))
        table = _read(store, files, selected, _row_filter(orgs, models))
        again = data_files(store, days)
        if _fingerprint(again) == _fingerprint(files):
            return to_dataframe(table)
        files = again  # a publish replaced a file during the read: read the new one
    raise OutputError(
        f"the dataset under {store.display(DATASET_DIR)} kept changing during "
        f"{_READ_ATTEMPTS} reads; try again"
    )


def _read(
    store: Store, files: Sequence[DataFile], selected: list[str], row_filter: Any
) -> pa.Table:
    base = store.native(DATASET_DIR)
    try:
        dataset = ds.dataset(
            [store.native(file.path) for file in files],
            schema=DATASET_SCHEMA,
            format="parquet",
            filesystem=store.filesystem,
            partitioning=_HIVE,
            partition_base_dir=base,
        )
        return dataset.to_table(columns=selected, filter=row_filter)
    except STORAGE_ERRORS as exc:
        raise OutputError(
            f"cannot read the dataset under {store.display(DATASET_DIR)}: {exc}"
        ) from exc


def read_manifest(
    uri: Source, day: date | str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The manifest of one snapshot (`day`: a `date` or `YYYY-MM-DD`), or None when that
    snapshot has none (see `connector.dataset.partition.read_manifest`)."""
    return partition.read_manifest(open_store(uri, storage_options), as_day(day, "day"))
