"""Measure a staged day against the last published day before it, on DuckDB (embedded).

`check_day` is the one function a publish calls (`connector.extraction.publish`): it measures
(`measure`) and judges (`connector.checks.verdicts.judge`). The staged rows (the parts' data
files, which are exactly what the day's file is merged from) and the previous partition's data
files are read through the store's own pyarrow filesystem and streamed into DuckDB, one row per
(org, model, version) with its count and how many rows it had, so the same code measures a
local directory and an `s3://` prefix and no DuckDB extension is ever needed. Only four
columns are read, and DuckDB holds one small row per version, spilling to a private temporary
directory beyond `MEMORY_LIMIT`; what comes back to Python is counts, the models that went
missing, and a few examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from connector.atomic import scratch_directory
from connector.checks.verdicts import MAX_EXAMPLES, Absent, DayChecks, Measurements, judge
from connector.config import CHECK_NAMES, ChecksSettings
from connector.dataset.reader import data_files, snapshot_dates
from connector.dataset.schema import DATASET_SCHEMA
from connector.dataset.store import STORAGE_ERRORS, Store
from connector.errors import OutputError

MEMORY_LIMIT = "1GiB"  # one small row per version; beyond this DuckDB spills to disk
_COLUMNS = ["org", "model", "version", "download_count", "is_latest"]
_SCHEMA = pa.schema([DATASET_SCHEMA.field(name) for name in _COLUMNS])
_KEYS = "(org VARCHAR, model VARCHAR, version VARCHAR, c BIGINT, k BIGINT, latest BOOLEAN)"
# A count a version should still have: known before, and it did not stop being `latest` (a
# plain-string listing without `version_detail` gives a count to the latest version only).
_EXPECTED = "p.c IS NOT NULL AND NOT (p.latest AND NOT n.latest)"
_BOTH = "prev_keys p JOIN now_keys n USING (org, model, version)"

Target = tuple[str, str]
# The checks that read the previous snapshot (only `duplicates` does not).
COMPARING = tuple(name for name in CHECK_NAMES if name != "duplicates")


def check_day(
    store: Store,
    day: date,
    staged: Sequence[str],
    targets: Iterable[Target],
    covers: Callable[[str, str], bool],
    settings: ChecksSettings,
) -> DayChecks:
    """The checks of the day staged in the data files `staged` (store paths), for a run that
    targeted `targets` with a config that `covers` a model when listed. Raises OutputError
    when a file cannot be read; the previous snapshot is not read at all when every check
    that compares with it is switched off (the way past a previous partition that cannot be
    read)."""
    compare = not set(COMPARING) <= set(settings.disabled)
    measured = measure(store, day, staged, targets, covers, compare=compare)
    return DayChecks(tuple(judge(measured, settings)), measured.previous_day)


def previous_day(store: Store, day: date) -> date | None:
    """The last published day before `day`, if any."""
    earlier = [published for published in snapshot_dates(store) if published < day]
    return earlier[-1] if earlier else None


def measure(
    store: Store,
    day: date,
    staged: Sequence[str],
    targets: Iterable[Target],
    covers: Callable[[str, str], bool],
    *,
    compare: bool = True,
) -> Measurements:
    """What the checks judge (see `Measurements`); with `compare` False, as on a first day."""
    targeted = set(targets)
    previous = previous_day(store, day) if compare else None
    replaced = _rows_of(store, [file.path for file in data_files(store, [day])]) if compare else 0
    with _connection() as con:
        _load(con, "now_keys", store, staged, "the staged day")
        rows, duplicates = _one(con, "SELECT coalesce(sum(k), 0), count_if(k > 1) FROM now_keys")
        base = Measurements(
            rows=rows,
            targets=len(targeted),
            duplicates=duplicates,
            duplicate_examples=_examples(
                con, "SELECT org, model, version FROM now_keys WHERE k > 1"
            ),
            replaced_rows=replaced,
        )
        if previous is None:
            return base
        prev_files = [file.path for file in data_files(store, [previous])]
        _load(con, "prev_keys", store, prev_files, f"the snapshot of {previous}")
        return _compared(con, base, previous, targeted, covers)


def _compared(
    con: duckdb.DuckDBPyConnection,
    base: Measurements,
    previous: date,
    targeted: set[Target],
    covers: Callable[[str, str], bool],
) -> Measurements:
    """`base` with everything measured against the previous snapshot."""
    previous_rows, previous_models = _one(
        con,
        "SELECT coalesce(sum(k), 0), count(DISTINCT (org, model)) FROM prev_keys",
    )
    both, decreased, known, lost = _one(
        con,
        f"""SELECT count(*), count_if(n.c < p.c), count_if({_EXPECTED}),
                   count_if({_EXPECTED} AND n.c IS NULL) FROM {_BOTH}""",
    )
    config, listed, empty = _absent(con, targeted, covers)
    examples = f"SELECT org, model, version, p.c, n.c FROM {_BOTH} WHERE "
    return dataclasses.replace(
        base,
        previous_day=previous,
        previous_rows=previous_rows,
        previous_models=previous_models,
        dropped_by_config=config,
        not_listed=listed,
        without_rows=empty,
        versions_in_both=both,
        counts_decreased=decreased,
        decreased_examples=_examples(con, examples + "n.c < p.c"),
        counts_known_before=known,
        counts_lost=lost,
        lost_examples=_examples(con, examples + f"{_EXPECTED} AND n.c IS NULL"),
    )


def _absent(
    con: duckdb.DuckDBPyConnection, targeted: set[Target], covers: Callable[[str, str], bool]
) -> tuple[Absent, Absent, Absent]:
    """The previous snapshot's models without rows now, by reason: the config no longer asks
    for them; it would, but the registry no longer lists them; they were targeted, but failed
    or have no versions now."""
    missing = con.sql(
        """SELECT DISTINCT org, model FROM prev_keys
           EXCEPT SELECT DISTINCT org, model FROM now_keys ORDER BY org, model"""
    ).fetchall()
    present = {org for (org,) in con.sql("SELECT DISTINCT org FROM now_keys").fetchall()}
    reasons: dict[str, list[Target]] = {"config": [], "listed": [], "empty": []}
    for org, model in missing:
        if (org, model) in targeted:
            reasons["empty"].append((org, model))
        elif covers(org, model):
            reasons["listed"].append((org, model))
        else:
            reasons["config"].append((org, model))
    config, listed, empty = (
        _bounded(reasons[key], present) for key in ("config", "listed", "empty")
    )
    return config, listed, empty


def _bounded(models: list[Target], present: set[str]) -> Absent:
    orgs = sorted({org for org, _ in models} - present)
    return Absent(
        models=len(models),
        examples=tuple(f"{org}/{model}" for org, model in models[:MAX_EXAMPLES]),
        orgs=tuple(orgs[:MAX_EXAMPLES]),
    )


def _examples(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[str, ...]:
    """The first MAX_EXAMPLES rows of `sql` (org, model, version[, before, now]), as text."""
    found = con.sql(f"{sql} ORDER BY 1, 2, 3 LIMIT {MAX_EXAMPLES}").fetchall()
    return tuple(
        f"{row[0]}/{row[1]}@{row[2]}"
        + (f": {_count(row[3])} -> {_count(row[4])}" if len(row) > 3 else "")
        for row in found
    )


def _count(value: object) -> str:
    return "null" if value is None else str(value)


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[int, ...]:
    (row,) = con.sql(sql).fetchall()  # an aggregate without GROUP BY: one row
    return tuple(int(value or 0) for value in row)


@contextmanager
def _connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """A private in-memory DuckDB, held to MEMORY_LIMIT, spilling to a private directory that
    is removed afterwards; no extension is installed or loaded."""
    spill = scratch_directory("connector-checks-")
    con = duckdb.connect(
        config={
            "memory_limit": MEMORY_LIMIT,
            "temp_directory": spill.name,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        yield con
    except duckdb.Error as exc:
        raise OutputError(f"the checks could not be measured: {_first_line(exc)}") from exc
    finally:
        con.close()
        spill.cleanup()


def _load(
    con: duckdb.DuckDBPyConnection, table: str, store: Store, paths: Sequence[str], what: str
) -> None:
    """One row per (org, model, version) of the files `paths` into `table`: its largest count,
    how many rows it had, and whether it was `latest`."""
    con.execute(f"CREATE TEMP TABLE {table} {_KEYS}")
    if not paths:
        return
    try:
        scanner = ds.dataset(
            [store.native(path) for path in paths],
            schema=_SCHEMA,
            format="parquet",
            filesystem=store.filesystem,
        ).scanner(columns=_COLUMNS)
        con.register("source_rows", scanner.to_reader())
        con.execute(
            f"""INSERT INTO {table} SELECT org, model, version, max(download_count), count(*),
                coalesce(bool_or(is_latest), false) FROM source_rows GROUP BY org, model, version"""
        )
    except duckdb.Error as exc:
        raise _unreadable(store, paths, what, exc) from exc
    except STORAGE_ERRORS as exc:
        raise _unreadable(store, paths, what, exc) from exc
    finally:
        con.unregister("source_rows")


def _unreadable(store: Store, paths: Sequence[str], what: str, exc: BaseException) -> OutputError:
    shown = store.display(paths[0]) + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
    return OutputError(f"cannot read {what} ({shown}) for the checks: {_first_line(exc)}")


def _rows_of(store: Store, paths: Sequence[str]) -> int:
    """Rows of data files, from their footers (no data is read)."""
    total = 0
    for path in paths:
        try:
            with store.filesystem.open_input_file(store.native(path)) as handle:
                total += pq.read_metadata(handle).num_rows
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot read {store.display(path)}: {_first_line(exc)}") from exc
    return total


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
