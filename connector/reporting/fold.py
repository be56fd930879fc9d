"""Per-version facts of a window, folded from its rows a span of days at a time.

Why a fold and not a GROUP BY: whether a version's count ever went down depends on the order
of its counts by day, which a plain aggregate cannot see and a window function would buy with
a sort of every row. The snapshots are daily partitions, so the rows come a span of days at a
time (each span read by DuckDB in parallel and joined to the versions of the start and end
snapshots); a span becomes a days x versions grid in numpy, and the state carried from span to
span is a few numbers per version. Memory follows the versions, not rows x days.

The facts are those of the exact SQL path (`engine._FACTS`): a row's `created_at` is the first
known one by day, its `framework` the last known one, its first count the first known one. Both
of those attributes are fetched afterwards, only from the days where they were last seen, so the
rows' strings are read once. A version with two rows on one day makes `fold` return False; the
caller then answers on the exact path, which keeps the last copy in file order.
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


def _first_true(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: whether any cell is True, and the row of the first one."""
    return np.asarray(grid.any(axis=0)), np.asarray(grid.argmax(axis=0))


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
        self.created_day = np.full(versions, _NEVER, np.int64)  # first day with created_at
        self.framework_day = np.full(versions, _NEVER, np.int64)  # last day with a framework

    def fold(self, rows: pa.Table, span: list[date]) -> bool:
        """Fold one span's rows (columns d, i, c, has_created, has_framework; any order; days
        later than every span folded before); False when a version has two rows on one day."""
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
        counts = rows.column("c")
        grid = np.full(shape, _LOWEST, np.int64)
        if counts.null_count:
            has = counts.is_valid().to_numpy(zero_copy_only=False)
            grid.ravel()[cell[has]] = counts.drop_null().to_numpy()
            known = np.zeros(shape, bool)
            known.ravel()[cell[has]] = True
        else:
            grid.ravel()[cell] = counts.to_numpy()
            known = present

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

        anywhere, first = _first_true(known)
        fresh = anywhere & (self.first_day == _NEVER)
        self.first_day[fresh] = days[first[fresh]]
        self.first_count[fresh] = grid[first[fresh], np.flatnonzero(fresh)]

        for column, target, earliest in (
            ("has_created", self.created_day, True),
            ("has_framework", self.framework_day, False),
        ):
            flags = rows.column(column)
            if pc.all(flags).as_py() is not False:
                marked = present
            else:
                marked = np.zeros(shape, bool)
                marked.ravel()[cell[flags.to_numpy(zero_copy_only=False)]] = True
            if not earliest:
                marked = marked[::-1]
            anywhere, at = _first_true(marked)
            if not earliest:
                at = len(span) - 1 - at
            take = anywhere & (target == _NEVER) if earliest else anywhere
            target[take] = days[at[take]]
        return True

    def wanted(self) -> tuple[pa.Table, pa.Table]:
        """(i, d) of the rows to read `created_at` and `framework` from: the day each was
        first (created_at) or last (framework) known, per version."""
        tables = []
        for target in (self.created_day, self.framework_day):
            where = np.flatnonzero(target != _NEVER)
            tables.append(
                pa.table(
                    {
                        "i": pa.array(where.astype(np.int32)),
                        "d": pa.array((target[where] - _EPOCH_ORDINAL).astype(np.int32)).cast(
                            pa.date32()
                        ),
                    }
                )
            )
        return tables[0], tables[1]

    def table(self, keys: pa.Table, created_at: pa.Array, framework: pa.Array) -> pa.Table:
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
                "created_at": created_at.cast(DATASET_SCHEMA.field("created_at").type),
                "framework": framework.cast(DATASET_SCHEMA.field("framework").type),
            }
        )
        return table.filter(pa.array(self.in_start | self.in_end))
