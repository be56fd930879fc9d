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

Data the connector did not write is checked, not trusted: a file that lacks a column every
connector file has (schema v1's) or holds one with a type that does not read as the schema's
is an `OutputError` naming the file and the column, never a column of nulls; a column added
since v1 may be missing from older files and reads as nulls.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from connector.dataset import delta, partition
from connector.dataset.layout import DATASET_DIR, DataFile, partition_path
from connector.dataset.locate import open_store
from connector.dataset.schema import DATASET_SCHEMA, PARTITION_COLUMN, to_dataframe
from connector.dataset.store import STORAGE_ERRORS, Store
from connector.dates import as_day, as_optional_day
from connector.errors import ConfigError, OutputError
from connector.redaction import printable

Source = str | os.PathLike[str] | Store

_PARTITION_DIR = re.compile(rf"^{PARTITION_COLUMN.name}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_HIVE = ds.partitioning(
    pa.schema([pa.field(PARTITION_COLUMN.name, PARTITION_COLUMN.type)]), flavor="hive"
)
_READ_ATTEMPTS = 3
# Schema v1's columns: every file the connector has ever written holds them. Columns added
# since (v2's detail columns, and later ones) may be missing from older files.
BASE_COLUMNS = (
    "extracted_at",
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
    "extra",
)
_TIMESTAMP_UNITS = ("s", "ms", "us")  # read as microseconds without losing a digit


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
    entries = store.list(DATASET_DIR)  # one listing tells a table's log and the partitions
    if delta.table_in(store, entries):
        return delta.snapshot_dates(store)
    days = []
    for entry in entries:
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


def _fits(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a file's column type reads as the schema's without changing a value: the type
    itself, or the same kind in another layout (a narrower integer, a large, view or
    dictionary-encoded string, a time zone-aware timestamp of at most microseconds, a large
    list)."""
    if actual.equals(expected):
        return True
    if pa.types.is_dictionary(actual):
        return _fits(actual.value_type, expected)
    if pa.types.is_string(expected):
        return bool(
            pa.types.is_string(actual)
            or pa.types.is_large_string(actual)
            or pa.types.is_string_view(actual)
        )
    if pa.types.is_integer(expected) and pa.types.is_integer(actual):
        signed = pa.types.is_signed_integer(actual)
        return bool(actual.bit_width <= expected.bit_width - (0 if signed else 1))
    if pa.types.is_timestamp(expected) and pa.types.is_timestamp(actual):
        return actual.tz is not None and actual.unit in _TIMESTAMP_UNITS
    if pa.types.is_list(expected) and (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
        return _fits(actual.value_type, expected.value_type)
    return False


def check_schema(shown: str, schema: pa.Schema, columns: Iterable[str]) -> None:
    """OutputError naming the file (`shown`) and the column when the file lacks one of
    `columns` that every connector file has, or holds one whose type does not read as the
    schema's: a damaged or foreign file must never turn into a column of nulls. (The file's
    name and types are escaped: a foreign writer chose them.)"""
    shown = printable(shown)
    for name in columns:
        if name == PARTITION_COLUMN.name:
            continue
        expected = DATASET_SCHEMA.field(name).type
        index = schema.get_field_index(name)
        if index < 0:
            if name in BASE_COLUMNS:
                raise OutputError(
                    f"{shown} has no column {name!r} (every file of the dataset has it): "
                    "the file is damaged or was not written by the connector"
                )
            continue
        actual = schema.field(index).type
        if not _fits(actual, expected):
            raise OutputError(
                f"{shown}: column {name!r} is {printable(str(actual))}, expected {expected}: "
                "the file is damaged or was not written by the connector"
            )


def check_files(store: Store, files: Sequence[DataFile], columns: Sequence[str]) -> None:
    """`check_schema` for each file, from its footer alone (no row is read)."""
    for file in files:
        shown = store.display(file.path)
        try:
            with store.filesystem.open_input_file(store.native(file.path)) as handle:
                schema = pq.read_schema(handle)
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot read {printable(shown)}: {printable(str(exc))}") from exc
        check_schema(shown, schema, columns)


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
    paths = {store.native(file.path): file.path for file in files}
    try:
        dataset = ds.dataset(
            list(paths),
            schema=DATASET_SCHEMA,
            format="parquet",
            filesystem=store.filesystem,
            partitioning=_HIVE,
            partition_base_dir=base,
        )
        for fragment in dataset.get_fragments():  # the schema given would fill a gap with nulls
            shown = store.display(paths.get(fragment.path, fragment.path))
            check_schema(shown, fragment.physical_schema, selected)
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
