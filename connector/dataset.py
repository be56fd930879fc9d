"""Read the published snapshot dataset: partition dates, manifests and rows, scanning only what a
question needs.

Only directories named `snapshot_date=YYYY-MM-DD` count as partitions, and only `*.parquet` files
in them (not starting with `_` or `.`) as data: `_manifest.json`, a stray temp file or a folder
that is not `key=value` must never break a read. The partition list comes from directory names
alone, so finding the window of a report costs one listing; the rows are then read from the
in-window partitions only (a corrupt file in another partition is never opened) and only for the
requested columns.

`uri` is what the extractor's `output.uri` accepts: a local path or a `file://` URI
(`connector.snapshot` owns the layout; this module only reads it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from connector.errors import ConfigError, NoDataError, OutputError
from connector.schema import DATASET_SCHEMA, PARTITION_COLUMN, to_dataframe
from connector.snapshot import DATASET_DIR, MANIFEST_NAME, local_root, partition_dir

_PARTITION_DIR = re.compile(rf"^{PARTITION_COLUMN.name}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_HIVE = ds.partitioning(
    pa.schema([pa.field(PARTITION_COLUMN.name, PARTITION_COLUMN.type)]), flavor="hive"
)


def _list_dir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OutputError(f"cannot list {path}: {exc}") from exc


def _partition_date(name: str) -> date | None:
    match = _PARTITION_DIR.match(name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:  # e.g. snapshot_date=2024-02-30
        return None


def snapshot_dates(uri: str | os.PathLike[str]) -> list[date]:
    """Every published snapshot date, sorted; from directory names only, so it stays cheap."""
    days = {
        day
        for entry in _list_dir(local_root(uri) / DATASET_DIR)
        if entry.is_dir() and (day := _partition_date(entry.name)) is not None
    }
    return sorted(days)


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
    def missing_days(self) -> tuple[date, ...]:
        """Days inside the window that have no snapshot."""
        present = set(self.snapshots)
        every = (self.start + timedelta(days=i) for i in range(self.days + 1))
        return tuple(day for day in every if day not in present)


def _check_window_options(days: int | None, start: date | None, end: date | None) -> None:
    problems = []
    if days is not None and (start is not None or end is not None):
        problems.append("days cannot be combined with start/end")
    if days is not None and days < 1:
        problems.append(f"days must be at least 1, not {days}")
    if end is not None and start is None:
        problems.append("end needs a start date too")
    if start is not None and end is not None and start > end:
        problems.append(f"start {start} is after end {end}")
    if problems:
        raise ConfigError(problems)


def _latest_window(dates: list[date], days: int) -> tuple[date, date, list[str]]:
    last = dates[-1]
    wanted = last - timedelta(days=days)
    older = [d for d in dates if d <= wanted]
    if not older:
        return dates[0], last, [f"no snapshot on or before {wanted}: the window starts earlier"]
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
    notes = [] if first == start else [f"no snapshot on {start}: the window starts at {first}"]
    if last != wanted_end:
        notes.append(f"no snapshot on {wanted_end}: the window ends at {last}")
    return first, last, notes


def resolve_window(
    available: Sequence[date],
    *,
    days: int | None = None,
    start: date | None = None,
    end: date | None = None,
) -> Window:
    """Pick the two snapshots to compare (rules in `connector.analytics`'s docstring): `days`
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
    missing = window.missing_days
    if missing:
        shown = ", ".join(str(d) for d in missing[:5]) + (", ..." if len(missing) > 5 else "")
        notes.append(f"{len(missing)} day(s) in the window have no snapshot ({shown})")
    return Window(first, last, window.snapshots, tuple(notes))


def _data_files(root: Path, days: Sequence[date]) -> list[str]:
    """The `*.parquet` files of the given partitions (never manifests, temp or hidden files)."""
    return sorted(
        entry.path
        for day in days
        for entry in _list_dir(partition_dir(root, day))
        if entry.is_file()
        and entry.name.endswith(".parquet")
        and not entry.name.startswith(("_", "."))
    )


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
    uri: str | os.PathLike[str],
    start: date | None = None,
    end: date | None = None,
    columns: Sequence[str] | None = None,
    orgs: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Rows of the snapshots dated `start`..`end` (inclusive, either open), as nullable dtypes.

    Partitions outside the window are pruned by directory name before any file is opened;
    `orgs`/`models` filters are pushed down to the Parquet reader. A missing or empty dataset
    gives an empty frame with the requested columns.
    """
    selected = _check_columns(columns)
    root = local_root(uri)
    days = [
        day
        for day in snapshot_dates(uri)
        if (start is None or day >= start) and (end is None or day <= end)
    ]
    files = _data_files(root, days)
    if not files:
        return to_dataframe(DATASET_SCHEMA.empty_table().select(selected))
    try:
        dataset = ds.dataset(
            files,
            schema=DATASET_SCHEMA,
            format="parquet",
            partitioning=_HIVE,
            partition_base_dir=str(root / DATASET_DIR),
        )
        table = dataset.to_table(columns=selected, filter=_row_filter(orgs, models))
    except (pa.ArrowException, OSError) as exc:
        raise OutputError(f"cannot read the dataset under {root / DATASET_DIR}: {exc}") from exc
    return to_dataframe(table)


def read_manifest(uri: str | os.PathLike[str], day: date) -> dict[str, Any] | None:
    """The `_manifest.json` of one snapshot, or None when that snapshot has none."""
    path = partition_dir(local_root(uri), day) / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc}") from exc
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise OutputError(f"{path} does not hold a JSON object")
    return manifest
