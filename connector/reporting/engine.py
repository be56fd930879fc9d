"""The report's heavy lifting on DuckDB (embedded): the window's rows never reach pandas.

One pass over the in-window rows, a span of days at a time (`connector.reporting.fold`), gives
one row of facts per version in the start or end snapshot (its counts there, its first known
count, whether a count ever went down, created_at, framework), and a second pass, restricted to
the versions of the groups shown, gives the chart's daily series. pandas only sees those
results, so memory follows the answer, not rows x days.

Rows come from the in-window partitions only and only the needed columns: local Parquet files
are handed to DuckDB as an explicit list (its own parallel reader); object storage goes through
the store's pyarrow filesystem (`connector.dataset.store`), streamed into DuckDB file by
file, so no DuckDB extension (httpfs) is ever needed: extensions are neither installed nor
loaded at run time. On object storage each object's size and modification time are compared
before and after a query, and the query runs again when a publish replaced one meanwhile (the
reader's torn-read rule). DuckDB is held to `memory_limit` and spills to a temporary directory
that is removed afterwards; a limit too small for the window is a `MemoryLimitError`.

A row repeated for the same version and day (across part files) counts once, the last in file
order, as `load_snapshots` + pandas did.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from datetime import date
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from connector.atomic import scratch_directory
from connector.dataset.layout import DataFile
from connector.dataset.reader import data_files
from connector.dataset.schema import DATASET_SCHEMA, PARTITION_COLUMN, to_dataframe
from connector.dataset.store import Store
from connector.errors import ConfigError, MemoryLimitError, OutputError
from connector.reporting.fold import Facts, span_length

MEMORY_SHARE = 0.5  # the default limit: this share of physical memory ...
MEMORY_CAP = 8 * 2**30  # ... but never more than this
MEMORY_FLOOR = 2**20  # below this DuckDB cannot even plan a query
_READ_ATTEMPTS = 3
_KEYS = ["org", "model", "version"]
_COLUMNS = ["org", "model", "version", "created_at", "download_count", "framework"]
_DAY_IN_PATH = rf"{PARTITION_COLUMN.name}=([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})/[^/]*$"
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_UNITS |= {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|[kmgt]?i?)b?\s*$", re.IGNORECASE)


def physical_memory() -> int:
    """Bytes of physical memory of this machine."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def default_memory_limit() -> int:
    """Half the machine's memory, capped at 8 GiB: enough for a year of a large registry while
    leaving room for everything else on the host."""
    return min(int(physical_memory() * MEMORY_SHARE), MEMORY_CAP)


def parse_memory_limit(text: str | int | None) -> int:
    """`2GiB`, `512MB`, `1.5G`, `25%` (of physical memory) or a number of bytes."""
    if text is None:
        return default_memory_limit()
    if isinstance(text, int):
        size = text
    else:
        match = _SIZE.match(text)
        if match is None:
            raise ConfigError(
                [f"memory limit {text!r}: expected a size like 512MB, 2GiB or 25% of memory"]
            )
        number, unit = float(match.group(1)), match.group(2).lower()
        wanted = physical_memory() * number / 100 if unit == "%" else number * _UNITS[unit]
        size = int(min(wanted, physical_memory() + 1))  # `1e400` is inf: no int of it
    if size < MEMORY_FLOOR:
        raise ConfigError([f"memory limit {text!r}: at least 1MiB is needed"])
    if size > physical_memory():  # more than there is cannot be meant (and DuckDB refuses it)
        raise ConfigError(
            [f"memory limit {text!r}: more than this machine's {human_size(physical_memory())}"]
        )
    return size


def human_size(size: int) -> str:
    """A byte count as a person reads it (MiB or GiB)."""
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def window_files(store: Store, days: Sequence[date]) -> list[DataFile]:
    """The `*.parquet` files of the given partitions, sorted by path (the order the loader
    reads them in, which decides which of two copies of a row wins)."""
    return data_files(store, days)


def _glob_literal(path: str) -> str:
    """A path as a DuckDB file pattern that matches only itself (its glob characters quoted)."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Rows:
    """Where the window's rows come from; `prepare` names a SQL relation with the columns
    d, fname, rn (file order), org, model, version, created_at, c, framework, holding the rows
    of `days` (None: every day)."""

    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        orgs: list[str],
        models: list[str],
        days: Sequence[date] | None = None,
    ) -> str:
        raise NotImplementedError

    def days(self, start: date, end: date) -> list[date]:
        """The snapshot days with rows between `start` and `end`, in order."""
        raise NotImplementedError

    def fingerprint(self) -> Any:
        """Something that changes when the data changed under a running query (None: never)."""
        return None


def _file_days(files: Sequence[DataFile], start: date, end: date) -> list[date]:
    return sorted({file.day for file in files if start <= file.day <= end})


def _files_of(files: list[DataFile], days: Sequence[date] | None) -> list[DataFile]:
    if days is None:
        return files
    wanted = set(days)
    return [file for file in files if file.day in wanted]


def _filters(orgs: list[str], models: list[str]) -> str:
    conditions = [
        f"{column} IN ({', '.join(_sql_text(v) for v in values)})"
        for column, values in (("org", orgs), ("model", models))
        if values
    ]
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


class LocalFiles(Rows):
    """Local Parquet files, read by DuckDB itself (in parallel, with projection pushdown)."""

    def __init__(self, store: Store, files: Sequence[DataFile]) -> None:
        self.store = store
        self.files = list(files)

    def days(self, start: date, end: date) -> list[date]:
        return _file_days(self.files, start, end)

    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        orgs: list[str],
        models: list[str],
        days: Sequence[date] | None = None,
    ) -> str:
        files = _files_of(self.files, days)
        paths = ", ".join(_sql_text(_glob_literal(self.store.native(f.path))) for f in files)
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW window_rows AS
            SELECT regexp_extract(filename, '{_DAY_IN_PATH}', 1)::DATE AS d,
              filename AS fname, file_row_number AS rn, org, model, version,
              created_at, download_count AS c, framework
            FROM read_parquet([{paths}], filename = true, file_row_number = true,
                              union_by_name = true, hive_partitioning = false)
            {_filters(orgs, models)}"""
        )
        return "window_rows"


_STREAM_SCHEMA = pa.schema(
    [
        pa.field("d", pa.date32()),
        pa.field("fname", pa.string()),
        pa.field("rn", pa.int64()),
        *(DATASET_SCHEMA.field(name) for name in _COLUMNS),
    ]
)


class StreamedFiles(Rows):
    """Files on object storage, read through the dataset's pyarrow filesystem one file at a
    time and streamed into DuckDB (no DuckDB extension involved)."""

    def __init__(self, store: Store, files: Sequence[DataFile]) -> None:
        self.store = store
        self.files = list(files)

    def days(self, start: date, end: date) -> list[date]:
        return _file_days(self.files, start, end)

    def _batches(
        self, files: list[DataFile], orgs: list[str], models: list[str]
    ) -> Iterator[pa.RecordBatch]:
        row_filter = None
        for column, values in (("org", orgs), ("model", models)):
            if values:
                condition = ds.field(column).isin(values)
                row_filter = condition if row_filter is None else row_filter & condition
        schema = pa.schema([DATASET_SCHEMA.field(name) for name in _COLUMNS])
        for file in files:
            try:
                table = ds.dataset(
                    self.store.native(file.path),
                    schema=schema,
                    format="parquet",
                    filesystem=self.store.filesystem,
                ).to_table(columns=_COLUMNS, filter=row_filter)
            except (pa.ArrowException, OSError) as exc:
                raise OutputError(f"cannot read {self.store.display(file.path)}: {exc}") from exc
            rows = table.num_rows
            extra = [
                pa.array([file.day] * rows, pa.date32()),
                pa.array([file.path] * rows, pa.string()),
                pa.array(range(rows), pa.int64()),
            ]
            yield from pa.Table.from_arrays(
                extra + table.columns, schema=_STREAM_SCHEMA
            ).to_batches()

    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        orgs: list[str],
        models: list[str],
        days: Sequence[date] | None = None,
    ) -> str:
        batches = self._batches(_files_of(self.files, days), orgs, models)
        reader = pa.RecordBatchReader.from_batches(_STREAM_SCHEMA, batches)
        con.register("streamed_rows", reader)
        con.execute(
            """CREATE OR REPLACE TEMP VIEW window_rows AS
            SELECT d, fname, rn, org, model, version, created_at, download_count AS c, framework
            FROM streamed_rows"""
        )
        return "window_rows"

    def fingerprint(self) -> Any:
        days = sorted({file.day for file in self.files})
        return [(f.path, f.size, f.mtime_ns) for f in window_files(self.store, days)]


class FrameRows(Rows):
    """Rows already in memory (a frame as `load_snapshots` returns it, in its own order)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        columns = {
            "d": pa.array(frame[PARTITION_COLUMN.name].dt.date, pa.date32()),
            "fname": pa.nulls(len(frame), pa.string()).fill_null(""),
            "rn": pa.array(range(len(frame)), pa.int64()),
        }
        for name in _COLUMNS:
            columns[name] = pa.array(frame[name], DATASET_SCHEMA.field(name).type, from_pandas=True)
        self.table = pa.table(columns, schema=_STREAM_SCHEMA)

    def days(self, start: date, end: date) -> list[date]:
        found = pc.unique(self.table.column("d")).to_pylist()
        return sorted(day for day in found if start <= day <= end)

    def prepare(
        self,
        con: duckdb.DuckDBPyConnection,
        orgs: list[str],
        models: list[str],
        days: Sequence[date] | None = None,
    ) -> str:
        table = self.table
        if days is not None:
            table = table.filter(pc.is_in(table.column("d"), pa.array(days, pa.date32())))
        con.register("frame_rows", table)
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW window_rows AS
            SELECT d, fname, rn, org, model, version, created_at, download_count AS c, framework
            FROM frame_rows {_filters(orgs, models)}"""
        )
        return "window_rows"


# One row per version and day (the last copy in file order), only the window's days.
_DEDUP = """
  kept AS (
    SELECT * FROM (
      SELECT *, lead(d) OVER (PARTITION BY org, model, version ORDER BY d, fname, rn)
                IS DISTINCT FROM d AS last_copy
      FROM {rows} WHERE d BETWEEN $start AND $end
    ) WHERE last_copy
  )"""

_FACTS = (
    "WITH"
    + _DEDUP
    + """,
  ordered AS (
    SELECT *, c < lag(c IGNORE NULLS) OVER (PARTITION BY org, model, version ORDER BY d) AS down
    FROM kept
  )
SELECT org, model, version,
  bool_or(d = $start) AS in_start,
  max(c) FILTER (WHERE d = $start) AS start_count,
  bool_or(d = $end) AS in_end,
  max(c) FILTER (WHERE d = $end) AS end_count,
  min(d) FILTER (WHERE c IS NOT NULL) AS first_date,
  arg_min(c, d) AS first_count,
  coalesce(bool_or(down), false) AS went_down,
  arg_min(created_at, d) AS created_at,
  arg_max(framework, d) AS framework
FROM ordered
GROUP BY org, model, version
HAVING bool_or(d = $start) OR bool_or(d = $end)
"""
)

# The fast path (connector/reporting/fold.py): the versions of the start and end snapshots,
# then the rows of a span of days joined to them, then each version's framework from the day
# it was last known on.
_KEY_ROWS = "SELECT DISTINCT org, model, version FROM {rows}"
_SPAN_ROWS = """
SELECT d, i, c, epoch_us(created_at) AS created, framework IS NOT NULL AS has_framework
FROM {rows} JOIN fact_keys USING (org, model, version)
"""
_NO_KEYS = pa.schema([DATASET_SCHEMA.field(name) for name in _KEYS]).empty_table()
_NO_FRAMEWORK = pa.array([], DATASET_SCHEMA.field("framework").type)
_FRAMEWORK_ROWS = """
SELECT k.i, r.framework FROM {rows} AS r
JOIN fact_keys AS k ON r.org = k.org AND r.model = k.model AND r.version = k.version
JOIN wanted AS w ON w.i = k.i AND w.d = r.d
"""

_DAILY = (
    "WITH"
    + _DEDUP.replace(
        "{rows}", "(SELECT * FROM {rows} SEMI JOIN chosen USING (org, model, version))"
    )
    + """,
  known AS (SELECT d, org, model, version, c FROM kept WHERE c IS NOT NULL),
  seeded AS (
    SELECT * FROM known
    UNION ALL
    SELECT $start AS d, org, model, version, 0 AS c FROM chosen WHERE is_new
  ),
  highs AS (
    SELECT *, max(c) OVER (PARTITION BY org, model, version ORDER BY d) AS high FROM seeded
  ),
  gains AS (
    SELECT *, coalesce(high - lag(high) OVER (PARTITION BY org, model, version ORDER BY d), 0)
      AS gained
    FROM highs
  )
SELECT {keys}, g.d AS snapshot_date, sum(g.gained)::BIGINT AS gained
FROM gains AS g JOIN chosen AS v USING (org, model, version)
GROUP BY ALL
"""
)


class Engine:
    """One DuckDB connection for one report: memory-limited, spilling to its own temporary
    directory, no extensions fetched or loaded; use as a context manager."""

    def __init__(
        self,
        rows: Rows,
        *,
        memory_limit: int | None = None,
        orgs: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        shown: str = "the dataset",
    ) -> None:
        self.rows = rows
        self.memory_limit = memory_limit or default_memory_limit()
        self.orgs, self.models = list(orgs or []), list(models or [])
        self.shown = shown
        self._spill = scratch_directory("connector-report-")
        self._con = duckdb.connect(
            config={
                "memory_limit": f"{self.memory_limit}B",
                "temp_directory": self._spill.name,
                "threads": os.cpu_count() or 1,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "preserve_insertion_order": False,
            }
        )

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and remove the spill directory."""
        self._con.close()
        self._spill.cleanup()

    def _query(self, sql: str, params: dict[str, Any]) -> pa.Table:
        for _ in range(_READ_ATTEMPTS):
            before = self.rows.fingerprint()
            table = self._run(sql, params)
            if before is None or self.rows.fingerprint() == before:
                return table
        raise OutputError(f"{self.shown} kept changing during {_READ_ATTEMPTS} reads; try again")

    def observations(self, start: date, end: date) -> pd.DataFrame:
        """Per version in the start or end snapshot: in_start, start_count, in_end, end_count,
        first_date and first_count (its first known count), went_down, created_at, framework.

        Fast path: the rows are folded a span of days at a time (`connector.reporting.fold`),
        reading every row once and sorting none. Should a version have two rows on one day,
        the exact path (sorted windows, the last copy in file order) answers instead."""
        params = {"start": start, "end": end}
        for _ in range(_READ_ATTEMPTS):
            before = self.rows.fingerprint()
            table = self._folded(start, end)
            if before is None or self.rows.fingerprint() == before:
                break
        else:
            raise OutputError(
                f"{self.shown} kept changing during {_READ_ATTEMPTS} reads; try again"
            )
        if table is None:
            table = self._query(_FACTS, params)
        frame = _typed(table)
        frame["first_date"] = frame["first_date"].astype("datetime64[s]")
        for flag in ("in_start", "in_end", "went_down"):
            frame[flag] = frame[flag].astype(bool)
        return frame.set_index(_KEYS).sort_index()

    def _read(self, sql: str, days: Sequence[date]) -> pa.Table:
        return self._run(sql, {}, days)

    def _folded(self, start: date, end: date) -> pa.Table | None:
        """The facts on the fast path; None when a version has two rows on one day."""
        days = self.rows.days(start, end)
        ends = [day for day in (start, end) if day in days]
        keys = self._read(_KEY_ROWS, ends) if ends else _NO_KEYS
        count = keys.num_rows
        if not count:
            return Facts(0, start, end).table(_NO_KEYS, _NO_FRAMEWORK)
        keys = keys.append_column("i", pa.array(range(count), pa.int32()))
        facts = Facts(count, start, end)
        self._con.register("fact_keys", keys)
        try:
            step = span_length(count)
            for first in range(0, len(days), step):
                span = days[first : first + step]
                if not facts.fold(self._read(_SPAN_ROWS, span), span):
                    return None
            framework = self._framework(facts.wanted(), count)
        finally:
            self._con.unregister("fact_keys")
        return facts.table(keys, framework)

    def _framework(self, wanted: pa.Table, count: int) -> pa.Array:
        """Each version's (index i) framework, read from the row `wanted` (i, d) names: only
        the days some version's framework was last known on are read (usually the end's)."""
        index = np.full(count, -1, np.int64)
        values = _NO_FRAMEWORK
        if wanted.num_rows:
            self._con.register("wanted", wanted)
            try:
                days = sorted(set(wanted.column("d").to_pylist()))
                found = self._read(_FRAMEWORK_ROWS, days)
            finally:
                self._con.unregister("wanted")
            index[found.column("i").to_numpy()] = np.arange(found.num_rows)
            values = found.column("framework").combine_chunks()
        return values.take(pa.array(index, mask=index < 0))

    def _run(
        self, sql: str, params: dict[str, Any], days: Sequence[date] | None = None
    ) -> pa.Table:
        """`sql` over the rows (of `days`, default all) as `{rows}`, errors made readable."""
        try:
            relation = self.rows.prepare(self._con, self.orgs, self.models, days)
            return self._con.sql(sql.format(rows=relation), params=params).to_arrow_table()
        except duckdb.OutOfMemoryException as exc:
            raise self._memory_error(exc) from exc
        except duckdb.Error as exc:
            raise OutputError(f"cannot read {self.shown}: {_first_line(exc)}") from exc

    def _memory_error(self, exc: BaseException) -> MemoryLimitError:
        return MemoryLimitError(
            f"the report over {self.shown} needs more than the memory limit of "
            f"{human_size(self.memory_limit)} even when spilling to disk: raise "
            f"--memory-limit (or memory_limit=) or narrow the window ({_first_line(exc)})"
        )

    def has_rows(self, start: date, end: date) -> bool:
        """Whether any row (after the filters) is dated inside the window."""
        sql = "SELECT count(*) AS n FROM {rows} WHERE d BETWEEN $start AND $end"
        table = self._query(sql, {"start": start, "end": end})
        return bool(table.column("n")[0].as_py())

    def daily_sums(
        self, start: date, end: date, chosen: pd.DataFrame, keys: Sequence[str]
    ) -> pd.DataFrame:
        """Per group (`keys`) and snapshot: downloads gained since the previous snapshot by the
        `chosen` versions (org, model, version, framework, is_new), each version's gain being
        how far its count rose above the highest seen before (from its baseline)."""
        columns = [*_KEYS, "framework", "is_new"]
        small = pa.Table.from_pandas(chosen[columns], preserve_index=False)
        self._con.register("chosen", small)
        selected = ", ".join(f"v.{key}" for key in keys)
        table = self._query(_DAILY.replace("{keys}", selected), {"start": start, "end": end})
        frame = _typed(table)
        frame["snapshot_date"] = frame["snapshot_date"].astype("datetime64[s]")
        frame["gained"] = frame["gained"].astype("Int64")
        return frame


def _typed(table: pa.Table) -> pd.DataFrame:
    """DuckDB's answer with the dataset's own types and nullable pandas dtypes."""
    fields = []
    for field in table.schema:
        if field.name in DATASET_SCHEMA.names and field.name != PARTITION_COLUMN.name:
            fields.append(pa.field(field.name, DATASET_SCHEMA.field(field.name).type))
        elif pa.types.is_integer(field.type):
            fields.append(pa.field(field.name, pa.int64()))
        else:
            fields.append(field)
    renamed = {"start_count": "int64", "end_count": "int64", "first_count": "int64"}
    fields = [pa.field(f.name, pa.int64()) if f.name in renamed else f for f in fields]
    return to_dataframe(table.cast(pa.schema(fields)))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
