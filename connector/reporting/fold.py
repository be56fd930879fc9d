"""Per-version facts of a window, folded from its rows a span of days at a time.

Why a fold and not a GROUP BY: whether a version's count ever went down depends on the order
of its counts by day, which a plain aggregate cannot see and a window function would buy with
a sort of every row. The snapshots are daily partitions, so the rows come a span of days at a
time (each span read by DuckDB in parallel and joined to the versions of the start and end
snapshots); a span becomes a days x versions grid in numpy, and the state carried from span to
span is a few numbers per version. Memory follows the versions, not rows x days.

The facts are those of the exact SQL path (`engine._FACTS`): a version's `created_at` is the
first known one by day, its `framework` the last known one, its first count the first known one.
The span's rows carry created_at as a number and only whether a framework is known; the
framework itself is read afterwards from the days it was last known on (usually just the end
snapshot), so no string but the keys is read more than once. A version with two rows on one
day makes `fold` return False; the caller then answers on the exact path, which keeps the last
copy in file order.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connector.dataset.schema import DATASET_SCHEMA

SPAN_CELLS = 1 << 21  # days x versions held at once (about 40 MB of grids)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_LOWEST = np.iinfo(np.int64).min
_NEVER = -1


def span_length(versions: int) -> int:
    """How many days one span holds for this many versions."""
    return max(1, SPAN_CELLS // max(versions, 1))


def _ordinals(days: list[date]) -> np.ndarray:
    return np.array([day.toordinal() for day in days], np.int64)


def _first_true(grid: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns (versions) that are `wanted` and have a True cell, and the row (span day)
    of the first True cell of each of those."""
    columns = np.flatnonzero(wanted & grid.any(axis=0))
    return columns, grid[:, columns].argmax(axis=0)


def _scatter(
    values: pa.ChunkedArray, cell: np.ndarray, shape: tuple[int, int], present: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An int64 column into a grid at the rows' cells, and where it is known (not null)."""
    grid = np.full(shape, _LOWEST, np.int64)
    if not values.null_count:
        grid.ravel()[cell] = values.to_numpy()
        return grid, present
    has = values.is_valid().to_numpy(zero_copy_only=False)
    grid.ravel()[cell[has]] = values.drop_null().to_numpy()
    known = np.zeros(shape, bool)
    known.ravel()[cell[has]] = True
    return grid, known


class Facts:
    """The carried state for `versions` versions over a window from `start` to `end`."""

    def __init__(self, versions: int, start: date, end: date) -> None:
        self.versions = versions
        self.start, self.end = start.toordinal(), end.toordinal()
        self.in_start = np.zeros(versions, bool)
        self.in_end = np.zeros(versions, bool)
        self.start_count = np.zeros(versions, np.int64)
        self.start_known = np.zeros(versions, bool)
        self.end_count = np.zeros(versions, np.int64)
        self.end_known = np.zeros(versions, bool)
        self.first_day = np.full(versions, _NEVER, np.int64)  # first day with a known count
        self.first_count = np.zeros(versions, np.int64)
        self.highest = np.full(versions, _LOWEST, np.int64)  # highest known count so far
        self.went_down = np.zeros(versions, bool)
        self.created_at = np.zeros(versions, np.int64)  # the first known, in microseconds
        self.created_known = np.zeros(versions, bool)
        self.framework_day = np.full(versions, _NEVER, np.int64)  # last day with a framework

    def fold(self, rows: pa.Table, span: list[date]) -> bool:
        """Fold one span's rows (columns d, i, c, created in microseconds, has_framework; any
        order; days later than every span folded before); False when a version has two rows on
        one day."""
        days = _ordinals(span)
        if not rows.num_rows:
            return True
        shape = (len(span), self.versions)
        # A row's cell in the grid (day-major, flat): a lookup per calendar day, then its version.
        lookup = np.full(int(days[-1] - days[0]) + 1, -1, np.int64)
        lookup[days - days[0]] = np.arange(len(days)) * self.versions
        ordinal = rows.column("d").cast(pa.int32()).to_numpy().astype(np.int64)
        cell = lookup[ordinal + (_EPOCH_ORDINAL - int(days[0]))]
        cell += rows.column("i").to_numpy()
        present = np.zeros(shape, bool)
        present.ravel()[cell] = True
        if int(np.count_nonzero(present)) != len(cell):
            return False  # two rows in one cell: a version twice on one day
        grid, known = _scatter(rows.column("c"), cell, shape, present)

        for day, seen, count, count_known in (
            (self.start, self.in_start, self.start_count, self.start_known),
            (self.end, self.in_end, self.end_count, self.end_known),
        ):
            at = np.flatnonzero(days == day)
            if len(at):
                np.logical_or(seen, present[at[0]], out=seen)
                np.copyto(count, grid[at[0]], where=known[at[0]])
                np.logical_or(count_known, known[at[0]], out=count_known)

        running = np.maximum.accumulate(grid, axis=0)
        before = np.empty_like(grid)
        before[0] = self.highest
        np.maximum(running[:-1], self.highest, out=before[1:])
        self.went_down |= (known & (grid < before)).any(axis=0)
        np.maximum(self.highest, running[-1], out=self.highest)

        fresh, first = _first_true(known, self.first_day == _NEVER)
        self.first_day[fresh] = days[first]
        self.first_count[fresh] = grid[first, fresh]

        created, created_known = _scatter(rows.column("created"), cell, shape, present)
        fresh, first = _first_true(created_known, ~self.created_known)
        self.created_at[fresh] = created[first, fresh]
        self.created_known[fresh] = True

        flags = rows.column("has_framework")
        if pc.all(flags).as_py() is False:
            present = np.zeros(shape, bool)
            present.ravel()[cell[flags.to_numpy(zero_copy_only=False)]] = True
        found, last = _first_true(present[::-1], np.ones(self.versions, bool))
        self.framework_day[found] = days[len(span) - 1 - last]
        return True

    def wanted(self) -> pa.Table:
        """(i, d): the day each version's framework was last known on, to read it from."""
        where = np.flatnonzero(self.framework_day != _NEVER)
        day = (self.framework_day[where] - _EPOCH_ORDINAL).astype(np.int32)
        return pa.table(
            {"i": pa.array(where.astype(np.int32)), "d": pa.array(day).cast(pa.date32())}
        )

    def table(self, keys: pa.Table, framework: pa.Array) -> pa.Table:
        """The facts as the exact path's columns, for the versions in `keys` (org, model,
        version, i): only those seen at the start or end snapshot are kept."""
        epoch = _EPOCH_ORDINAL
        first = np.where(self.first_day == _NEVER, 0, self.first_day - epoch).astype(np.int32)
        table = pa.table(
            {
                "org": keys.column("org"),
                "model": keys.column("model"),
                "version": keys.column("version"),
                "in_start": pa.array(self.in_start),
                "start_count": pa.array(self.start_count, mask=~self.start_known),
                "in_end": pa.array(self.in_end),
                "end_count": pa.array(self.end_count, mask=~self.end_known),
                "first_date": pa.array(first, pa.date32(), mask=self.first_day == _NEVER),
                "first_count": pa.array(self.first_count, mask=self.first_day == _NEVER),
                "went_down": pa.array(self.went_down),
                "created_at": pa.array(self.created_at, mask=~self.created_known).cast(
                    DATASET_SCHEMA.field("created_at").type
                ),
                "framework": framework.cast(DATASET_SCHEMA.field("framework").type),
            }
        )
        return table.filter(pa.array(self.in_start | self.in_end))
