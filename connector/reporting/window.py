"""Which two snapshots a report compares: the window rules, from partition dates alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from connector.errors import ConfigError, NoDataError

MISSING_DAYS_LISTED = 10  # the report names this many missing days at most; it counts them all
# The longest `days` window: a century. Snapshots start in 2000 (`connector.cli.options`), so a
# longer one means the same (the earliest snapshot); refusing it keeps date arithmetic in range.
MAX_DAYS = 36_600


@dataclass(frozen=True)
class Window:
    """The two snapshots a report compares, the snapshots between them, and why they were chosen."""

    start: date
    end: date
    snapshots: tuple[date, ...]
    notes: tuple[str, ...] = ()

    @property
    def days(self) -> int:
        """Real distance between the two snapshots, the divisor of `gained_per_day`."""
        return (self.end - self.start).days

    @property
    def missing_day_count(self) -> int:
        """How many days inside the window have no snapshot: the span minus the days present, so
        a gap of centuries costs nothing to count."""
        return self.days + 1 - len(self.snapshots)

    @property
    def missing_days(self) -> tuple[date, ...]:
        """The first `MISSING_DAYS_LISTED` days inside the window that have no snapshot (all of
        them when there are no more): walks the gaps between snapshots and stops early, so its
        cost never depends on how long a gap is."""
        listed: list[date] = []
        for before, after in zip(self.snapshots, self.snapshots[1:], strict=False):
            day = before + timedelta(days=1)
            while day < after and len(listed) < MISSING_DAYS_LISTED:
                listed.append(day)
                day += timedelta(days=1)
            if len(listed) == MISSING_DAYS_LISTED:
                break
        return tuple(listed)


def _check_window_options(days: int | None, start: date | None, end: date | None) -> None:
    problems = []
    if days is not None and (start is not None or end is not None):
        problems.append("days cannot be combined with start/end")
    if days is not None and not 1 <= days <= MAX_DAYS:
        problems.append(f"days must be at least 1 and at most {MAX_DAYS} (a century), not {days}")
    if end is not None and start is None:
        problems.append("end needs a start date too")
    if start is not None and end is not None and start > end:
        problems.append(f"start {start} is after end {end}")
    if problems:
        raise ConfigError(problems)


def _moved(edge: str, wanted: date, actual: date) -> str:
    """'the window starts later, at 2026-01-03': earlier or later by comparing the dates."""
    way = "earlier" if actual < wanted else "later"
    return f"the window {edge} {way}, at {actual}"


def _latest_window(dates: list[date], days: int) -> tuple[date, date, list[str]]:
    last = dates[-1]
    wanted = last - timedelta(days=days)
    older = [d for d in dates if d <= wanted]
    if not older:
        return (
            dates[0],
            last,
            [f"no snapshot on or before {wanted}: {_moved('starts', wanted, dates[0])}"],
        )
    notes = [] if older[-1] == wanted else [f"no snapshot on {wanted}: using the one before"]
    return older[-1], last, notes


def _dated_window(dates: list[date], start: date, end: date | None) -> tuple[date, date, list[str]]:
    wanted_end = end or dates[-1]
    ends = [d for d in dates if d <= wanted_end]
    if not ends:
        raise NoDataError(f"no snapshot on or before {wanted_end} (the earliest is {dates[0]})")
    before = [d for d in dates if d <= start]
    first, last = (before[-1] if before else next(d for d in dates if d > start)), ends[-1]
    if first >= last:
        raise NoDataError(
            f"start {start} and end {wanted_end} resolve to the same snapshot ({last}):"
            f" pick dates further apart (snapshots: {dates[0]} to {dates[-1]})"
        )
    notes = [] if first == start else [f"no snapshot on {start}: {_moved('starts', start, first)}"]
    if last != wanted_end:
        notes.append(f"no snapshot on {wanted_end}: {_moved('ends', wanted_end, last)}")
    return first, last, notes


def resolve_window(
    available: Sequence[date],
    *,
    days: int | None = None,
    start: date | None = None,
    end: date | None = None,
) -> Window:
    """Pick the two snapshots to compare (rules in the `analytics` docstring): `days`
    (default 1) back from the latest, or the snapshots on or nearest before `start`/`end`."""
    _check_window_options(days, start, end)
    dates = sorted(set(available))
    if not dates:
        raise NoDataError("the dataset holds no snapshot yet: run the extractor first")
    if len(dates) == 1:
        raise NoDataError(
            f"the dataset holds a single snapshot ({dates[0]}): a report compares two snapshots,"
            " so run the extractor again on a later day"
        )
    if start is None:
        first, last, notes = _latest_window(dates, days or 1)
    else:
        first, last, notes = _dated_window(dates, start, end)
    window = Window(first, last, tuple(d for d in dates if first <= d <= last))
    missing, count = window.missing_days, window.missing_day_count
    if count:
        shown = ", ".join(str(d) for d in missing[:5]) + (", ..." if count > 5 else "")
        notes.append(f"{count} day(s) in the window have no snapshot ({shown})")
    return Window(first, last, window.snapshots, tuple(notes))
