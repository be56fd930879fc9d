"""The report's facts per version, computed on DuckDB (embedded) and numpy: the window's rows
never reach pandas, so memory follows the answer, not rows x days.

One way, three steps, each reading only the files it needs (`connector.reporting.sources`):
1. the start and end snapshots give the versions to report on and most of their facts (whether
   each is in either snapshot, its counts there, its created_at and framework at the end);
2. one pass over every in-window row, a span of days at a time (DuckDB reads a span's files in
   parallel and joins their rows to those versions; numpy folds them, `connector.reporting.fold`):
   whether a count went down, the first known count,
   and, for a listed version whose end row does not say, the last day its created_at or its
   framework was known;
3. only for such versions (usually none), those days' rows are read again for the value.
Measured against a single SQL query (a `lag` window for decreases), this is several times
faster on the benchmark year: the window sorts every row, the fold sorts none.

A version of the report with two rows on one snapshot day of the window (the writer never
produces that; a foreign or damaged writer could) is an OutputError naming the day, the version
and the files, never a guess. (Rows of versions the report leaves out, such as those seen only
between the two snapshots, are not read, so they are not checked: they change no number.)
The chart's daily series is a second, separate query, over the versions of the groups shown.

On object storage a query runs again when a publish replaced an object meanwhile (the reader's
torn-read rule). DuckDB is held to `memory_limit` and spills to a temporary directory that is
removed afterwards; a limit too small for the window is a `MemoryLimitError`. Extensions are
neither installed nor loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import date
from types import TracebackType
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from connector.atomic import scratch_directory
from connector.dataset.schema import DATASET_SCHEMA, to_dataframe
from connector.errors import ConfigError, MemoryLimitError, OutputError
from connector.redaction import printable
from connector.reporting.fold import Fold, SpanRows, span_length
from connector.reporting.sources import Rows

MEMORY_SHARE = 0.5  # the default limit: this share of physical memory ...
MEMORY_CAP = 8 * 2**30  # ... but never more than this
MEMORY_FLOOR = 2**20  # below this DuckDB cannot even plan a query
_READ_ATTEMPTS = 3
KEYS = ["org", "model", "version"]
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_UNITS |= {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|[kmgt]?i?)b?\s*$", re.IGNORECASE)
_EPOCH = date(1970, 1, 1).toordinal()
_T = TypeVar("_T")


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


# Step 1: per version of the start (j = 0) or end (j = 1) snapshot.
_ENDS = """
SELECT org, model, version,
  bool_or(j = 0) AS in_start, max(c) FILTER (WHERE j = 0) AS start_count,
  bool_or(j = 1) AS in_end, max(c) FILTER (WHERE j = 1) AS end_count,
  max(created_at) FILTER (WHERE j = 1) AS end_created,
  max(framework) FILTER (WHERE j = 1) AS end_framework
FROM {rows} GROUP BY org, model, version
"""
# Step 2: a span's rows of those versions, each as its cell in the span's grid.
_SPAN = """
SELECT CASE WHEN r.c IS NULL THEN -1 - {cell} ELSE {cell} END::INTEGER AS cell,
  coalesce(r.c, 0) AS count{last}
FROM {{rows}} AS r JOIN fact_keys AS k USING (org, model, version)
"""
# Asked for only when some version needs them: a column less is a pass over 19 M rows less.
_LAST_KNOWN = ", k.need_{column} AND r.{column} IS NOT NULL AS has_{column}"
# Step 3: the value of `column` for version i on the day (index j) it was last known.
_LOOKUP = """
SELECT k.i, r.{column} AS value FROM {{rows}} AS r JOIN fact_keys AS k USING (org, model, version)
JOIN wanted AS w ON w.i = k.i AND w.j = r.j
"""
_LAST = ("created_at", "framework")  # the facts a version's latest row in the window gives
# The chart: per group and snapshot, how far each chosen version's count rose above the
# highest seen before (new versions start from 0 at the start snapshot).
_DAILY = """
WITH known AS (
    SELECT j, org, model, version, c FROM {rows} SEMI JOIN chosen USING (org, model, version)
    WHERE c IS NOT NULL
  ),
  seeded AS (
    SELECT * FROM known
    UNION ALL SELECT 0 AS j, org, model, version, 0 AS c FROM chosen WHERE is_new
  ),
  highs AS (
    SELECT *, max(c) OVER (PARTITION BY org, model, version ORDER BY j) AS high FROM seeded
  ),
  gains AS (
    SELECT *, coalesce(high - lag(high) OVER (PARTITION BY org, model, version ORDER BY j), 0)
      AS gained
    FROM highs
  )
SELECT {keys}, g.j, sum(g.gained)::BIGINT AS gained
FROM gains AS g JOIN chosen AS v USING (org, model, version)
GROUP BY ALL
"""


def _span_rows(table: pa.Table) -> list[SpanRows]:
    """A span query's answer as numpy views of its chunks (no copy of a chunk without an
    unknown count): the cell of a row whose count is unknown comes as -1 - cell (one column
    less to carry)."""
    chunks = []
    for batch in table.to_batches():
        cell = batch.column("cell").to_numpy()
        unknown = np.flatnonzero(cell < 0)
        if len(unknown):
            cell = cell.copy()
            cell[unknown] = -1 - cell[unknown]
        flagged = {
            column: cell[batch.column(f"has_{column}").to_numpy(zero_copy_only=False)]
            if f"has_{column}" in batch.schema.names
            else cell[:0]
            for column in _LAST
        }
        count = batch.column("count").to_numpy()
        chunks.append(
            SpanRows(cell, count, cell[unknown], flagged["created_at"], flagged["framework"])
        )
    return chunks


def _dates(days: Sequence[date], index: np.ndarray) -> pa.Array:
    """The days at `index` (-1: null) as a date32 array."""
    ordinals = np.array([day.toordinal() - _EPOCH for day in days], np.int32)
    return pa.array(ordinals[index], pa.date32(), mask=index < 0)


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
        try:
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
            # Each span's query would read its files' footers again: keep them for this report.
            self._con.execute("SET parquet_metadata_cache = true")
        except BaseException:  # no connection: the spill directory must not outlive the error
            self._spill.cleanup()
            raise

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

    def _consistent(self, compute: Callable[[], _T]) -> _T:
        """`compute()`, read again while the data changed under it (the torn-read rule)."""
        for _ in range(_READ_ATTEMPTS):
            before = self.rows.fingerprint()
            result = compute()
            if before is None or self.rows.fingerprint() == before:
                return result
        raise OutputError(f"{self.shown} kept changing during {_READ_ATTEMPTS} reads; try again")

    def _run(
        self, sql: str, days: Sequence[date], params: dict[str, Any] | None = None
    ) -> pa.Table:
        """`sql` over the rows of `days` as `{rows}`, errors made readable."""
        try:
            relation = self.rows.prepare(self._con, days, self.orgs, self.models)
            return self._con.sql(sql.format(rows=relation), params=params).to_arrow_table()
        except duckdb.OutOfMemoryException as exc:
            raise MemoryLimitError(
                f"the report over {self.shown} needs more than the memory limit of "
                f"{human_size(self.memory_limit)} even when spilling to disk: raise "
                f"--memory-limit (or memory_limit=) or narrow the window ({_first_line(exc)})"
            ) from exc
        except duckdb.Error as exc:
            raise OutputError(f"cannot read {self.shown}: {_first_line(exc)}") from exc

    def has_rows(self, days: Sequence[date]) -> bool:
        """Whether any row (after the filters) is in the snapshots of `days`."""
        table = self._consistent(lambda: self._run("SELECT count(*) AS n FROM {rows}", days))
        return bool(table.column("n")[0].as_py())

    def observations(self, days: Sequence[date]) -> pd.DataFrame:
        """Per version in the first or last snapshot of `days` (the window's): in_start,
        start_count, in_end, end_count, first_date and first_count (its first known count),
        went_down, created_at (the first known) and framework (the last known)."""
        frame = to_dataframe(self._consistent(lambda: self._facts(days)))
        frame["first_date"] = frame["first_date"].astype("datetime64[s]")
        for flag in ("in_start", "in_end", "went_down"):
            frame[flag] = frame[flag].astype(bool)
        return frame.set_index(KEYS).sort_index()

    def _facts(self, days: Sequence[date]) -> pa.Table:
        ends = self._run(_ENDS, [days[0], days[-1]])
        # Only listed versions (counted at the end, or gone from it) show created_at and
        # framework: the last known in the window, so the end row's unless it does not say.
        counted = pc.and_(ends["in_end"], pc.is_valid(ends["end_count"]))
        listed = pc.or_(counted, pc.invert(ends["in_end"]))
        need = {
            "created_at": pc.and_not(listed, pc.is_valid(ends["end_created"])),
            "framework": pc.and_not(listed, pc.is_valid(ends["end_framework"])),
        }
        keys = ends.select(KEYS).append_column("i", pa.array(np.arange(len(ends), dtype=np.int32)))
        for column in _LAST:
            keys = keys.append_column(f"need_{column}", need[column])
        sql = _SPAN.format(
            cell="(r.j * $versions + k.i)",
            last="".join(
                _LAST_KNOWN.format(column=column)
                for column in _LAST
                if pc.any(need[column]).as_py()
            ),
        )
        self._con.register("fact_keys", keys.filter(listed))  # the others are left out
        try:
            fold = self._fold(sql, days, keys)
            created = self._last_known("created_at", days, fold.created_day, ends["end_created"])
            framework = self._last_known(
                "framework", days, fold.framework_day, ends["end_framework"]
            )
        finally:
            self._con.unregister("fact_keys")
        return pa.table(
            {
                **{name: ends[name] for name in KEYS},
                "in_start": ends["in_start"],
                "start_count": ends["start_count"],
                "in_end": ends["in_end"],
                "end_count": ends["end_count"],
                "first_date": _dates(days, fold.first_day),
                "first_count": pa.array(fold.first_count, mask=fold.first_day < 0),
                "went_down": pa.array(fold.went_down),
                "created_at": created,
                "framework": framework,
            }
        )

    def _fold(self, sql: str, days: Sequence[date], keys: pa.Table) -> Fold:
        """Every span of `days` read and folded in turn."""
        versions = len(keys)
        step = span_length(versions)
        fold = Fold(versions, min(step, len(days)))
        for first in range(0, len(days) if versions else 0, step):
            span = days[first : first + step]
            rows = _span_rows(self._run(sql, span, {"versions": versions}))
            twice = fold.add(first, len(span), rows)
            if twice is not None:
                raise self._duplicate(span[twice // versions], keys.slice(twice % versions, 1))
        return fold

    def _last_known(
        self, column: str, days: Sequence[date], last_day: np.ndarray, at_end: pa.ChunkedArray
    ) -> pa.Array:
        """Each version's last known `column`: the end row's, else read from the day the fold
        found it last known on (usually no version needs that)."""
        kind = DATASET_SCHEMA.field(column).type
        wanted = np.flatnonzero(last_day >= 0)
        values = at_end.combine_chunks().cast(kind)
        if not len(wanted):
            return values
        on, position = np.unique(last_day[wanted], return_inverse=True)
        pairs = pa.table({"i": wanted.astype(np.int32), "j": position.astype(np.int32)})
        self._con.register("wanted", pairs)
        try:
            found = self._run(_LOOKUP.format(column=column), [days[day] for day in on])
        finally:
            self._con.unregister("wanted")
        index = np.arange(len(values))
        index[found["i"].to_numpy()] = len(values) + np.arange(len(found))
        return pa.concat_arrays([values, found["value"].combine_chunks().cast(kind)]).take(index)

    def _duplicate(self, day: date, key: pa.Table) -> OutputError:
        org, model, version = (key[name][0].as_py() for name in KEYS)
        files = [printable(path) for path in self.rows.files_of(day)]
        shown = ", ".join(files[:3]) + (", ..." if len(files) > 3 else "")
        return OutputError(
            f"the snapshot of {day} holds org {org!r}, model {model!r}, version {version!r} more "
            f"than once ({shown}): a snapshot has one row per version, so the dataset was damaged "
            "or written by another tool; the report does not guess which row is right"
        )

    def daily_sums(
        self, days: Sequence[date], chosen: pd.DataFrame, keys: Sequence[str]
    ) -> pd.DataFrame:
        """Per group (`keys`) and snapshot of `days`: downloads gained since the previous
        snapshot by the `chosen` versions (org, model, version, framework, is_new), each
        version's gain being how far its count rose above the highest seen before (from its
        baseline)."""
        columns = [*KEYS, "framework", "is_new"]
        self._con.register("chosen", pa.Table.from_pandas(chosen[columns], preserve_index=False))
        try:
            sql = _DAILY.replace("{keys}", ", ".join(f"v.{key}" for key in keys))
            table = self._consistent(lambda: self._run(sql, days))
        finally:
            self._con.unregister("chosen")
        frame = to_dataframe(table.cast(_daily_schema(table.schema)))
        frame["snapshot_date"] = np.array(days, "datetime64[s]")[frame.pop("j").to_numpy(int)]
        frame["gained"] = frame["gained"].astype("Int64")
        return frame


def _daily_schema(schema: pa.Schema) -> pa.Schema:
    """DuckDB's answer with the dataset's own types for the group keys."""
    return pa.schema(
        pa.field(f.name, DATASET_SCHEMA.field(f.name).type) if f.name in DATASET_SCHEMA.names else f
        for f in schema
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
