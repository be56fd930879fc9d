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
the first known count and its day, and, for the versions the caller asks about (those whose
end-snapshot row does not say), the last day their created_at and their framework were known.
A version with two rows on one day is reported, never folded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPAN_CELLS = 1 << 21  # days x versions at once: 2 M cells, about 20 MB of grids
_LOWEST = np.iinfo(np.int64).min
_NEVER = -1


def span_length(versions: int) -> int:
    """How many days one span holds for this many versions."""
    return max(1, SPAN_CELLS // max(versions, 1))


@dataclass(frozen=True)
class SpanRows:
    """Rows of a span (a chunk of them): each row's cell and count (0 where unknown), the cells
    whose count is unknown (usually few), and the cells of the rows with a created_at or a
    framework the caller asked about (usually none)."""

    cell: np.ndarray
    count: np.ndarray
    unknown: np.ndarray
    created: np.ndarray
    framework: np.ndarray


class Fold:
    """The carried state for `versions` versions over the days of a window, folded a span of
    at most `span_days` days at a time (the grids are allocated once, for the longest span)."""

    def __init__(self, versions: int, span_days: int) -> None:
        self.versions = versions
        self.highest = np.full(versions, _LOWEST, np.int64)  # highest known count so far
        self.went_down = np.zeros(versions, bool)
        self.first_day = np.full(versions, _NEVER, np.int64)  # window day of the first count
        self.first_count = np.zeros(versions, np.int64)
        self.created_day = np.full(versions, _NEVER, np.int64)  # last day it was known on
        self.framework_day = np.full(versions, _NEVER, np.int64)  # likewise
        cells = span_days * versions
        self._grid = np.empty(cells, np.int64)
        self._present = np.empty(cells, bool)
        self._known = np.empty(cells, bool)

    def add(self, first: int, days: int, chunks: Sequence[SpanRows]) -> int | None:
        """Fold the rows of window days `first` .. `first + days - 1` (in chunks, as the query
        answered them: scattered as they are, never concatenated), which come after every day
        folded before. Returns the cell of a version with two rows on one day, or None when
        there is none (then the rows are folded)."""
        size = days * self.versions
        present, grid = self._present[:size], self._grid[:size]
        present.fill(False)
        for chunk in chunks:  # cells no row names keep an older span's values: never read
            present[chunk.cell] = True
            grid[chunk.cell] = chunk.count
        if np.count_nonzero(present) != sum(len(chunk.cell) for chunk in chunks):
            ordered = np.sort(np.concatenate([chunk.cell for chunk in chunks]))
            return int(ordered[1:][ordered[1:] == ordered[:-1]][0])
        known = present
        if any(len(chunk.unknown) for chunk in chunks):
            known = self._known[:size]
            np.copyto(known, present)
            for chunk in chunks:
                known[chunk.unknown] = False
        self._counts(first, grid.reshape(days, -1), known.reshape(days, -1))
        for chunk in chunks:
            self._last_day(first, chunk.created, self.created_day)
            self._last_day(first, chunk.framework, self.framework_day)
        return None

    def _counts(self, first: int, grid: np.ndarray, known: np.ndarray) -> None:
        """went_down, highest and the first known count, reading only the known cells."""
        for day in range(len(grid)):  # a day at a time: no temporary of the grid's size
            row, known_row = grid[day], known[day]
            self.went_down |= known_row & (row < self.highest)
            np.maximum(self.highest, row, out=self.highest, where=known_row)
        fresh = np.flatnonzero((self.first_day == _NEVER) & known.any(axis=0))
        at = known[:, fresh].argmax(axis=0)
        self.first_day[fresh] = first + at
        self.first_count[fresh] = grid[at, fresh]

    def _last_day(self, first: int, cells: np.ndarray, last: np.ndarray) -> None:
        """Each version's last day among `cells`, if later than the one in `last`."""
        if not len(cells):
            return
        latest = np.full(self.versions, _NEVER, np.int64)
        np.maximum.at(latest, cells % self.versions, cells)  # the latest day: the largest cell
        found = latest != _NEVER
        last[found] = np.maximum(last[found], first + latest[found] // self.versions)
