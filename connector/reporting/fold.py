"""The per-version facts that depend on the order of a version's rows by day, folded in numpy
from the window's rows a span of days at a time.

Why not SQL: whether a count ever went down needs each version's counts in date order, and
DuckDB buys that order with a sort of every row (a `lag` window over the benchmark year takes
about ten times as long as the README's whole query). The snapshots are daily, so the rows of
a span of days fit a days x versions grid (a row's cell is its day's index in the span times
the number of versions plus the version's index): scattering them into the grid costs no sort,
and the state carried from span to span is a few numbers per version. Memory follows the
versions and `SPAN_CELLS`, never rows x days.

What is folded, per version: whether a count went down (below the highest known before it),
the first known count and its day, the first known `created_at` (only for the versions the
caller asks for: the others take theirs from the start snapshot) and the last day a framework
was known (likewise). A version with two rows on one day is reported, never folded.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

SPAN_CELLS = 1 << 21  # days x versions held at once (about 20 MB of grids)
_LOWEST = np.iinfo(np.int64).min
_NEVER = -1


def span_length(versions: int) -> int:
    """How many days one span holds for this many versions."""
    return max(1, SPAN_CELLS // max(versions, 1))


def _values(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray | None]:
    """An int64 column's known values and where they are (None: all known)."""
    if not column.null_count:
        return column.to_numpy(), None
    return column.drop_null().to_numpy(), column.is_valid().to_numpy(zero_copy_only=False)


class Fold:
    """The carried state for `versions` versions over the days of a window."""

    def __init__(self, versions: int) -> None:
        self.versions = versions
        self.highest = np.full(versions, _LOWEST, np.int64)  # highest known count so far
        self.went_down = np.zeros(versions, bool)
        self.first_day = np.full(versions, _NEVER, np.int64)  # window day of the first count
        self.first_count = np.zeros(versions, np.int64)
        self.created = np.zeros(versions, np.int64)  # the first known, in microseconds
        self.created_known = np.zeros(versions, bool)
        self.framework_day = np.full(versions, _NEVER, np.int64)  # last day with a framework

    def add(
        self,
        first: int,
        days: int,
        cell: np.ndarray,
        counts: pa.ChunkedArray,
        created: pa.ChunkedArray | None = None,
        has_framework: pa.ChunkedArray | None = None,
    ) -> int | None:
        """Fold the rows of window days `first` .. `first + days - 1`, which come after every
        day folded before. `cell` is each row's cell, `counts` its count, `created` its
        created_at in microseconds (null where unknown or not asked for) and `has_framework`
        whether it names a framework (false where not asked for). Returns the cell of a version
        with two rows on one day, or None when there is none (then the rows are folded)."""
        shape = (days, self.versions)
        present = np.zeros(shape, bool)
        present.ravel()[cell] = True
        if np.count_nonzero(present) != len(cell):
            ordered = np.sort(cell)
            return int(ordered[1:][ordered[1:] == ordered[:-1]][0])
        values, valid = _values(counts)
        grid = np.full(shape, _LOWEST, np.int64)
        known = present
        if valid is None:
            grid.ravel()[cell] = values
        else:
            grid.ravel()[cell[valid]] = values
            known = np.zeros(shape, bool)
            known.ravel()[cell[valid]] = True
        for day in range(days):  # a row of the grid at a time: no temporary of the grid's size
            row = grid[day]
            self.went_down |= known[day] & (row < self.highest)
            np.maximum(self.highest, row, out=self.highest)  # unknown cells hold the lowest
        fresh = np.flatnonzero((self.first_day == _NEVER) & known.any(axis=0))
        at = known[:, fresh].argmax(axis=0)
        self.first_day[fresh] = first + at
        self.first_count[fresh] = grid[at, fresh]
        if created is not None and created.null_count < len(created):
            self._first_created(cell, created)
        if has_framework is not None:
            self._last_framework(first, cell, has_framework)
        return None

    def _first_created(self, cell: np.ndarray, created: pa.ChunkedArray) -> None:
        values, valid = _values(created)
        cells = cell if valid is None else cell[valid]
        version = cells % self.versions
        earliest = np.full(self.versions, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(earliest, version, cells)  # the earliest day is the smallest cell
        take = (cells == earliest[version]) & ~self.created_known[version]
        self.created[version[take]] = values[take]
        self.created_known[version[take]] = True

    def _last_framework(self, first: int, cell: np.ndarray, has_framework: pa.ChunkedArray) -> None:
        flags = has_framework.to_numpy(zero_copy_only=False)
        cells = cell[flags]
        if not len(cells):
            return
        latest = np.full(self.versions, _NEVER, np.int64)
        np.maximum.at(latest, cells % self.versions, cells)
        found = latest != _NEVER
        self.framework_day[found] = first + latest[found] // self.versions
