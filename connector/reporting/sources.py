"""Where a report's rows come from: the window's Parquet files, as one SQL relation for DuckDB.

Only the in-window partitions are listed and only the columns the report needs are read. Local
files are handed to DuckDB as an explicit list (its own parallel reader, with projection
pushdown), after their footers are checked (`connector.dataset.reader.check_files`: a missing
or wrongly typed column is an error naming the file, never a column of nulls). Object storage
goes through the store's pyarrow filesystem (`connector.dataset.store`), one file at a time,
each checked as it is opened and streamed into DuckDB, so no DuckDB extension (httpfs) is ever
needed. There a publish can replace an object while a query runs: `fingerprint` (each object's
size and modification time) lets the engine notice and read again (the reader's torn-read rule).

The relation a source prepares has the columns j (the index of the row's snapshot day in the
`days` asked for), org, model, version, created_at, c (the download count) and framework.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from connector.dataset.layout import DataFile
from connector.dataset.reader import check_files, check_schema, data_files
from connector.dataset.schema import DATASET_SCHEMA
from connector.dataset.store import Store
from connector.errors import OutputError
from connector.redaction import printable

COLUMNS = ["org", "model", "version", "created_at", "download_count", "framework"]
_FILE_SCHEMA = pa.schema([DATASET_SCHEMA.field(name) for name in COLUMNS])
_STREAM_SCHEMA = pa.schema([pa.field("j", pa.int32()), *_FILE_SCHEMA])
_AS_ROWS = "j, org, model, version, created_at, download_count AS c, framework"


def window_files(store: Store, days: Sequence[date]) -> list[DataFile]:
    """The data files of the given partitions, by day and path."""
    return sorted(data_files(store, days), key=lambda file: (file.day, file.path))


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _glob_literal(path: str) -> str:
    """A path as a DuckDB file pattern that matches only itself (its glob characters quoted)."""
    return "".join(f"[{char}]" if char in "*?[" else char for char in path)


def _filters(orgs: Sequence[str], models: Sequence[str]) -> str:
    conditions = [
        f"{column} IN ({', '.join(_sql_text(value) for value in values)})"
        for column, values in (("org", orgs), ("model", models))
        if values
    ]
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


class Rows:
    """The window's files, ready to be named as a relation in a DuckDB query."""

    def __init__(self, store: Store, files: Sequence[DataFile]) -> None:
        self.store = store
        self.files = list(files)

    def files_of(self, day: date) -> list[str]:
        """The files of one snapshot day, as a person would type their paths."""
        return [self.store.display(file.path) for file in self.files if file.day == day]

    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        days: Sequence[date],
        orgs: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> str:
        """A relation (a subquery to put in FROM) holding the rows of `days`, after the org and
        model filters."""
        raise NotImplementedError

    def _of_days(self, days: Sequence[date]) -> tuple[list[DataFile], dict[date, int]]:
        """The files of `days`, and each day's position in `days` (its number in the rows)."""
        index = {day: position for position, day in enumerate(days)}
        return [file for file in self.files if file.day in index], index

    def fingerprint(self) -> Any:
        """Something that changes when the data changed under a running query (None: never)."""
        return None


class LocalFiles(Rows):
    """Local Parquet files, read by DuckDB itself. A swapped-in partition never changes a file
    already open, so no fingerprint is needed."""

    def __init__(self, store: Store, files: Sequence[DataFile]) -> None:
        super().__init__(store, files)
        check_files(store, self.files, COLUMNS)

    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        days: Sequence[date],
        orgs: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> str:
        files, index = self._of_days(days)
        if not files:
            con.register("no_rows", pa.Table.from_batches([], _STREAM_SCHEMA))
            return f"(SELECT {_AS_ROWS} FROM no_rows)"
        paths = ", ".join(_sql_text(_glob_literal(self.store.native(file.path))) for file in files)
        positions = ", ".join(str(index[file.day]) for file in files)
        return f"""(
            SELECT [{positions}][file_index::BIGINT + 1]::INTEGER AS {_AS_ROWS}
            FROM read_parquet([{paths}], union_by_name = true, hive_partitioning = false)
            {_filters(orgs, models)})"""


class StreamedFiles(Rows):
    """Files on object storage, read through the dataset's pyarrow filesystem one file at a
    time and streamed into DuckDB (no DuckDB extension involved)."""

    def _batches(
        self,
        files: list[DataFile],
        index: dict[date, int],
        orgs: Sequence[str],
        models: Sequence[str],
    ) -> Iterator[pa.RecordBatch]:
        row_filter = None
        for column, values in (("org", orgs), ("model", models)):
            if values:
                condition = ds.field(column).isin(list(values))
                row_filter = condition if row_filter is None else row_filter & condition
        for file in files:
            shown = self.store.display(file.path)
            try:
                dataset = ds.dataset(
                    self.store.native(file.path), format="parquet", filesystem=self.store.filesystem
                )
                check_schema(shown, dataset.schema, COLUMNS)
                table = dataset.to_table(columns=COLUMNS, filter=row_filter).cast(_FILE_SCHEMA)
            except (pa.ArrowException, OSError) as exc:
                raise OutputError(f"cannot read {printable(shown)}: {printable(str(exc))}") from exc
            day = pa.array(np.full(table.num_rows, index[file.day], np.int32))
            yield from pa.Table.from_arrays(
                [day, *table.columns], schema=_STREAM_SCHEMA
            ).to_batches()

    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        days: Sequence[date],
        orgs: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> str:
        files, index = self._of_days(days)
        batches = self._batches(files, index, orgs, models)
        con.register("streamed_rows", pa.RecordBatchReader.from_batches(_STREAM_SCHEMA, batches))
        return f"(SELECT {_AS_ROWS} FROM streamed_rows)"

    def fingerprint(self) -> Any:
        days = sorted({file.day for file in self.files})
        return [(f.path, f.size, f.mtime_ns) for f in window_files(self.store, days)]


def window_rows(store: Store, days: Sequence[date]) -> Rows:
    """The rows of the given snapshot days, from local files or from object storage."""
    files = window_files(store, days)
    return LocalFiles(store, files) if store.is_local else StreamedFiles(store, files)
