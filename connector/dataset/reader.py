"""Read the published snapshot dataset: partition dates, manifests and rows, scanning only what a
question needs.

Only directories named `snapshot_date=YYYY-MM-DD` count as partitions, and only `*.parquet` files
in them (not starting with `_` or `.`) as data: `_manifest.json`, a stray temp file or a folder
that is not `key=value` must never break a read. The partition list comes from directory names
alone, so finding the window of a report costs one listing; the rows are then read from the
in-window partitions only (a corrupt file in another partition is never opened) and only for the
requested columns.

Data the connector did not write is checked, not trusted: a file that lacks a column every
connector file has (schema v1's) or holds one with a type that does not read as the schema's
is an `OutputError` naming the file and the column, never a column of nulls; a column added
since v1 may be missing from older files and reads as nulls. Locally, a partition that is a
link, or holds one, is refused: the reader never follows a link out of the dataset (the writer
never makes one), and skipping it would leave rows out of an answer without a word.

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
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from connector.dataset.layout import DATASET_DIR
from connector.dataset.schema import DATASET_SCHEMA, PARTITION_COLUMN, to_dataframe
from connector.dataset.storage import STORAGE_ERRORS, Location, list_entries, locate, read_bytes
from connector.dataset.writer import MANIFEST_NAME
from connector.dates import DayLike, as_optional_day
from connector.errors import ConfigError, OutputError
from connector.redaction import printable

Source = str | os.PathLike[str] | Location

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


def _refuse_links(partition: str) -> None:
    """Locally: OutputError when the partition is a symbolic link or holds one."""
    try:
        if os.path.islink(partition):
            links = [partition]
        else:
            with os.scandir(partition) as entries:
                links = sorted(entry.path for entry in entries if entry.is_symlink())
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot list {partition}: {exc.strerror or exc}") from exc
    if links:
        raise OutputError(
            f"{printable(links[0])} is a symbolic link: the reader never follows links inside "
            "the dataset (the connector never writes one); replace it with the file itself or "
            "remove it"
        )


def data_files(location: Location, days: Sequence[date]) -> list[pafs.FileInfo]:
    """The `*.parquet` files of the given partitions (never manifests, temp or hidden files);
    locally, OutputError when a partition is, or holds, a symbolic link."""
    found: list[pafs.FileInfo] = []
    for day in days:
        partition = _partition(location, day)
        if location.is_local:
            _refuse_links(partition)
        found.extend(
            info
            for info in _list_dir(location, partition)
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith(("_", "."))
        )
    return sorted(found, key=lambda info: info.path)


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


def check_files(location: Location, paths: Sequence[str], columns: Sequence[str]) -> None:
    """`check_schema` for each file, from its footer alone (no row is read)."""
    for path in paths:
        shown = location.display(path)
        try:
            schema = pq.read_schema(path, filesystem=location.filesystem)
        except (pa.ArrowException, OSError) as exc:
            raise OutputError(f"cannot read {printable(shown)}: {printable(str(exc))}") from exc
        check_schema(shown, schema, columns)


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
    start: DayLike | None = None,
    end: DayLike | None = None,
    columns: Sequence[str] | None = None,
    orgs: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Rows of the snapshots dated `start`..`end` (inclusive, either open; a `date` or
    `YYYY-MM-DD`), as nullable dtypes.

    Partitions outside the window are pruned by directory name before any file is opened;
    `orgs`/`models` filters are pushed down to the Parquet reader. A missing or empty dataset
    gives an empty frame with the requested columns. A file lacking one of those columns (one
    every connector file has) or holding it with another type is an OutputError naming both.
    """
    first, last = as_optional_day(start, "start"), as_optional_day(end, "end")
    selected = _check_columns(columns)
    location = locate(uri, storage_options)
    days = [
        day
        for day in snapshot_dates(location)
        if (first is None or day >= first) and (last is None or day <= last)
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
        for fragment in dataset.get_fragments():  # the schema given would fill a gap with nulls
            check_schema(location.display(fragment.path), fragment.physical_schema, selected)
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
