"""Download analytics over the snapshots: how many downloads each group gained over a window.

Decisions (the README's "Reports" section repeats them):

* Window. `days=N` compares the latest snapshot with the latest snapshot at least N days older;
  when no snapshot is that old, the earliest one is used and a note says the window is shorter.
  `start`/`end`: the end snapshot is the latest on or before `end` (default: the latest), the start
  snapshot the latest on or before `start`, else the earliest after it. Both resolving to the same
  snapshot, or a dataset with a single snapshot, raise `NoDataError` with a clear message.
  `days` in the output is the real distance between the two snapshots, so `gained_per_day` stays
  right across missing days (counted in a note that names the first few).
* Gain of a version = end count - baseline, never below 0. The baseline is its count at the start
  snapshot; 0 for a version *new in the window* (absent from the start snapshot, `created_at` on
  or after the start snapshot's date, midnight UTC); otherwise (absent from the start snapshot but
  older or without `created_at`, or its start count unknown) its first known count in the window,
  flagged `counted_from_first_observation`: it existed but was not captured (its model failed
  that day, say), so downloads from before its first observation are not credited to the window.
  Versions seen only between the two snapshots are not in the report.
* A version's `created_at` and `framework` are the last known in the window (the registry's
  latest word: normally its row in the end snapshot), for `new in the window` too.
* A count that goes down anywhere in the window is flagged `count_decreased`; the gain is clipped
  at 0, never negative.
* A version in the start snapshot but not in the end one is `disappeared`: no end count (it is not
  part of the group's `download_count`) and 0 gain; it is still listed with `--by version`.
* Rows whose count is unknown (null) at the start or end snapshot are excluded from the gain and
  counted in `excluded_unknown_rows`; a version whose end count is unknown is left out altogether.
* Models listed as failed in the start or end snapshot's `_manifest.json` are named in a note:
  they explain versions counted from their first observation or shown as disappeared.
* Snapshots in the window published with failing checks overridden (`connector accept`), or
  whose counters went down since the snapshot before (the `counts_decreased` check), are named
  in a note too (`connector.checks.flags`).
* Rows sort by `downloads_gained` descending, then the group keys ascending; `top` keeps the first
  K (None or 0: all); `share_of_gained` is relative to the total over all groups (0 when nothing
  was gained at all).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from connector.checks.flags import check_notes
from connector.dataset.locate import open_store
from connector.dataset.reader import Source, read_manifest, snapshot_dates
from connector.dates import as_optional_day
from connector.errors import ConfigError, NoDataError, OutputError
from connector.reporting.engine import Engine, parse_memory_limit
from connector.reporting.sources import window_rows
from connector.reporting.window import Window, resolve_window

__all__ = [
    "GROUPINGS",
    "REPORT_COLUMNS",
    "Report",
    "Window",
    "compute_report",
    "report",
    "resolve_window",
]


GROUPINGS = ("version", "model", "org", "framework")
GROUP_KEYS: dict[str, list[str]] = {
    "version": ["org", "model", "version"],
    "model": ["org", "model"],
    "org": ["org"],
    "framework": ["framework"],
}
_VERSION_KEYS = GROUP_KEYS["version"]
_WINDOW = ["start_snapshot", "end_snapshot"]
_GAINS = ["downloads_gained", "gained_per_day", "share_of_gained"]
_VERSION_FLAGS = ["is_new", "counted_from_first_observation", "first_observed"]
_VERSION_FLAGS += ["count_decreased", "disappeared"]
_GROUP_COUNTS = ["versions", "new_versions", "new_version_names", "versions_from_first_observation"]
_GROUP_COUNTS += ["versions_count_decreased", "versions_disappeared"]
REPORT_COLUMNS: dict[str, list[str]] = {
    by: [*keys, "download_count", *_GAINS, *_GROUP_COUNTS, *_WINDOW]
    for by, keys in GROUP_KEYS.items()
}
REPORT_COLUMNS["version"] = [
    *_VERSION_KEYS,
    "framework",
    "created_at",
    "download_count",
    "baseline_count",
    *_GAINS,
    *_VERSION_FLAGS,
    *_WINDOW,
]


def classify_versions(seen: pd.DataFrame, window: Window) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per version counted at the end snapshot or gone from it: its baseline, gain and
    flags (see the module docstring), plus the counts of unknown rows and flagged versions.
    `seen` holds the engine's facts per version (`Engine.observations`)."""
    end_count = seen["end_count"]
    counted = seen["in_end"] & end_count.notna()
    is_new = (
        counted & ~seen["in_start"] & (seen["created_at"] >= pd.Timestamp(window.start, tz="UTC"))
    )
    from_first = counted & ~is_new & (seen["first_date"] > pd.Timestamp(window.start))
    baseline = seen["first_count"].where(~is_new, 0)
    versions = pd.DataFrame(
        {
            "framework": seen["framework"],
            "created_at": seen["created_at"],
            "download_count": end_count.where(counted),
            "baseline_count": baseline.where(counted, seen["start_count"]),
            "downloads_gained": (end_count - baseline).clip(lower=0).where(counted, 0),
            "is_new": is_new,
            "counted_from_first_observation": from_first,
            "first_observed": seen["first_date"].where(from_first),
            "count_decreased": seen["went_down"],
            "disappeared": seen["in_start"] & ~seen["in_end"],
            "counted": counted,
        }
    )
    versions = versions[counted | versions["disappeared"]].reset_index()
    versions["downloads_gained"] = versions["downloads_gained"].astype("int64")
    flags = {
        "unknown_rows_at_start": int((seen["in_start"] & seen["start_count"].isna()).sum()),
        "unknown_rows_at_end": int((seen["in_end"] & end_count.isna()).sum()),
        "new_versions": int(versions["is_new"].sum()),
        "versions_from_first_observation": int(versions["counted_from_first_observation"].sum()),
        "versions_count_decreased": int(versions["count_decreased"].sum()),
        "versions_disappeared": int(versions["disappeared"].sum()),
    }
    flags["excluded_unknown_rows"] = flags["unknown_rows_at_start"] + flags["unknown_rows_at_end"]
    return versions, flags


def group_labels(frame: pd.DataFrame, by: str) -> pd.Series:
    """A readable name per group: `org/model@version`, `org/model`, `org` or the framework."""
    if by == "framework":
        return frame["framework"].astype("string").fillna("(unknown)")
    label = frame["org"].astype("string")
    if by in ("model", "version"):
        label = label + "/" + frame["model"]
    if by == "version":
        label = label + "@" + frame["version"]
    return label


def _new_version_names(versions: pd.DataFrame, by: str) -> pd.Series:
    """The new versions per group, named relative to the group (e.g. `model@version` per org)."""
    new = versions[versions["is_new"]]
    name = new["version"]
    if by in ("org", "framework"):
        name = new["model"] + "@" + name
    if by == "framework":
        name = new["org"] + "/" + name
    keys = [new[k] for k in GROUP_KEYS[by]]
    return name.groupby(keys, dropna=False).agg(lambda names: ", ".join(sorted(names)))


def group_table(versions: pd.DataFrame, by: str, days: int) -> pd.DataFrame:
    """Aggregate classified versions into one row per group, sorted by gain then keys."""
    keys = GROUP_KEYS[by]
    if by == "version":
        table = versions.drop(columns="counted")
    else:
        table = versions.groupby(keys, dropna=False, sort=False).agg(
            download_count=("download_count", "sum"),
            downloads_gained=("downloads_gained", "sum"),
            versions=("counted", "sum"),
            new_versions=("is_new", "sum"),
            versions_from_first_observation=("counted_from_first_observation", "sum"),
            versions_count_decreased=("count_decreased", "sum"),
            versions_disappeared=("disappeared", "sum"),
        )
        names = _new_version_names(versions, by).reindex(table.index)
        table["new_version_names"] = names.astype("string").fillna("")
        table["download_count"] = table["download_count"].where(table["versions"] > 0)
        table = table.reset_index()
    table["gained_per_day"] = table["downloads_gained"].astype("float64") / days
    table["share_of_gained"] = 0.0
    order = [False] + [True] * len(keys)
    table = table.sort_values(["downloads_gained", *keys], ascending=order, kind="stable")
    return table.reset_index(drop=True)


def _daily(
    engine: Engine, versions: pd.DataFrame, window: Window, by: str, groups: pd.DataFrame
) -> pd.DataFrame:
    """Downloads gained between consecutive snapshots, per group of `groups`: the chart's
    series. A version's gain at a snapshot is how far its count rose above the highest count
    seen before (from its baseline), so a dip and recovery is not counted twice; only versions
    the report counts contribute, and in the usual case (counts that only grow) the series of a
    group sums to its `downloads_gained`."""
    keys = GROUP_KEYS[by]
    counted = versions.loc[versions["counted"], [*_VERSION_KEYS, "framework", "is_new"]]
    chosen = counted.merge(groups[keys].drop_duplicates(), on=keys)
    sums = engine.daily_sums(window.snapshots, chosen, keys)
    snapshots = [pd.Timestamp(day) for day in window.snapshots]
    pairs = pd.DataFrame({"previous_snapshot": snapshots[:-1], "snapshot_date": snapshots[1:]})
    daily = groups[keys].drop_duplicates().merge(pairs, how="cross")
    daily = daily.merge(sums, on=[*keys, "snapshot_date"], how="left")
    daily.insert(len(keys), "group", group_labels(daily, by))
    daily["days"] = (daily["snapshot_date"] - daily["previous_snapshot"]).dt.days.astype("int64")
    daily["downloads_gained"] = daily.pop("gained").fillna(0).astype("int64")
    daily["gained_per_day"] = daily["downloads_gained"] / daily["days"]
    return daily


@dataclass(frozen=True)
class Report:
    """A computed report: the table, the daily series for the chart, and how they came about.

    `daily` is computed on first use (only the chart needs it), from the engine's rows of the
    groups in the table."""

    table: pd.DataFrame
    daily_source: Callable[[], pd.DataFrame] = field(repr=False, compare=False)
    by: str
    window: Window
    total_gained: int
    total_groups: int
    top: int | None
    flags: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @functools.cached_property
    def daily(self) -> pd.DataFrame:
        """Downloads gained between consecutive snapshots per group shown: how far each counted
        version's count rose above the highest seen before (from its baseline)."""
        return self.daily_source()

    @property
    def excluded_unknown_rows(self) -> int:
        """Rows at the start or end snapshot whose count is unknown, left out of the gains."""
        return self.flags.get("excluded_unknown_rows", 0)

    def metadata(self) -> dict[str, Any]:
        """Everything but the tables, as `DataFrame.attrs` carries it."""
        return {
            "by": self.by,
            "start_snapshot": self.window.start,
            "end_snapshot": self.window.end,
            "days": self.window.days,
            "snapshots": list(self.window.snapshots),
            "missing_days": list(self.window.missing_days),
            "missing_day_count": self.window.missing_day_count,
            "total_gained": self.total_gained,
            "total_groups": self.total_groups,
            "top": self.top,
            **self.flags,
            "notes": list(self.notes),
        }


def _flag_notes(flags: dict[str, int]) -> list[str]:
    texts = {
        "excluded_unknown_rows": "row(s) with an unknown download count excluded from the gains",
        "versions_from_first_observation": (
            "version(s) not captured (or without a count) at the start snapshot:"
            " counted from their first observation"
        ),
        "versions_count_decreased": "version(s) whose download count went down (no negative gain)",
        "versions_disappeared": "version(s) in the start snapshot but not the end one: no gain",
    }
    return [f"{flags[key]} {text}" for key, text in texts.items() if flags.get(key)]


def _check_grouping(by: str, top: int | None) -> None:
    problems = [] if by in GROUPINGS else [f"by must be one of {', '.join(GROUPINGS)}, not {by!r}"]
    if top is not None and top < 0:
        problems.append(f"top must be 0 (all) or more, not {top}")
    if problems:
        raise ConfigError(problems)


def _summarize(
    engine: Callable[[], Engine],
    window: Window,
    *,
    by: str,
    top: int | None,
    notes: Sequence[str],
    empty: Callable[[], NoDataError],
) -> Report:
    """The report from the engine's facts; `engine` makes a fresh engine over the same rows."""
    with engine() as facts:
        seen = facts.observations(window.snapshots)
        if seen.empty and not facts.has_rows(window.snapshots):
            raise empty()
    versions, flags = classify_versions(seen, window)
    table = group_table(versions, by, window.days)
    total = int(table["downloads_gained"].sum())
    if total:
        table["share_of_gained"] = table["downloads_gained"].astype("float64") / total
    table["start_snapshot"] = pd.Timestamp(window.start)
    table["end_snapshot"] = pd.Timestamp(window.end)
    table = table[REPORT_COLUMNS[by]]
    shown_rows = table.head(top) if top else table
    shown_rows = shown_rows.reset_index(drop=True)

    def daily() -> pd.DataFrame:  # a second pass, only over the versions of the groups shown
        with engine() as series:
            return _daily(series, versions, window, by, shown_rows)

    result = Report(
        table=shown_rows,
        daily_source=daily,
        by=by,
        window=window,
        total_gained=total,
        total_groups=len(table),
        top=top or None,
        flags=flags,
        notes=(*window.notes, *notes, *_flag_notes(flags)),
    )
    shown_rows.attrs.update(result.metadata())
    return result


def _failure_notes(
    data: Source, window: Window, orgs: list[str] | None, models: list[str] | None
) -> list[str]:
    """Models that failed in the start or end snapshot's run, from the manifests: they explain
    versions counted from their first observation, or shown as disappeared."""
    notes = []
    for which, day in (("start", window.start), ("end", window.end)):
        try:
            failures = (read_manifest(data, day) or {}).get("failures") or []
        except OutputError as exc:
            notes.append(f"the {which} snapshot's manifest is unreadable: {exc}")
            continue
        failed = sorted(
            f"{failure.get('org')}/{failure.get('model')}"
            for failure in failures
            if isinstance(failure, dict)
            and (not orgs or failure.get("org") in orgs)
            and (not models or failure.get("model") in models)
        )
        if failed:
            shown = ", ".join(failed[:5]) + (", ..." if len(failed) > 5 else "")
            notes.append(f"{len(failed)} model(s) failed in the {which} snapshot ({day}): {shown}")
    return notes


def _as_list(value: Sequence[str] | str | None) -> list[str] | None:
    if value is None or isinstance(value, str):
        return [value] if value else None
    return list(value) or None


def _shown(data: Source) -> str:
    return os.fspath(data) if isinstance(data, str | os.PathLike) else data.uri


def compute_report(
    data: Source,
    *,
    days: int | None = None,
    start: date | str | None = None,
    end: date | str | None = None,
    by: str = "model",
    top: int | None = 20,
    org: Sequence[str] | str | None = None,
    model: Sequence[str] | str | None = None,
    memory_limit: int | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Report:
    """The report over the window's partitions (only the needed columns), computed by the
    engine within `memory_limit` (bytes, or a size such as "2GiB"; default: half the memory,
    at most 8 GiB). `start` and `end` are a `date` or `YYYY-MM-DD`. `storage_options`: an
    s3:// dataset's, as in `output.storage_options` (`config.output.storage_mapping()`)."""
    first, last = as_optional_day(start, "start"), as_optional_day(end, "end")
    _check_grouping(by, top)
    limit = parse_memory_limit(memory_limit)
    store = open_store(data, storage_options or None)
    available = snapshot_dates(store)
    if not available:
        raise NoDataError(f"no snapshots under {_shown(data)}: run the extractor first")
    window = resolve_window(available, days=days, start=first, end=last)
    orgs, models = _as_list(org), _as_list(model)
    rows = window_rows(store, window.snapshots)

    def empty() -> NoDataError:
        wanted = " and ".join(
            f"{name} {', '.join(values)}"
            for name, values in (("org", orgs), ("model", models))
            if values
        )
        return NoDataError(
            f"no rows for {wanted or 'any model'} between {window.start} and {window.end}"
        )

    if not rows.files:
        raise empty()

    def engine() -> Engine:
        shown = f"the dataset under {_shown(data)}"
        return Engine(rows, memory_limit=limit, orgs=orgs, models=models, shown=shown)

    notes = _failure_notes(store, window, orgs, models) + check_notes(store, window.snapshots)
    return _summarize(engine, window, by=by, top=top, notes=notes, empty=empty)


def report(
    data: Source,
    *,
    days: int | None = None,
    start: date | str | None = None,
    end: date | str | None = None,
    by: str = "model",
    top: int | None = 20,
    org: Sequence[str] | str | None = None,
    model: Sequence[str] | str | None = None,
    memory_limit: int | str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The report table; window and flags ride along in `DataFrame.attrs`. `start` and `end`
    are a `date` or `YYYY-MM-DD`."""
    return compute_report(
        data,
        days=days,
        start=start,
        end=end,
        by=by,
        top=top,
        org=org,
        model=model,
        memory_limit=memory_limit,
        storage_options=storage_options,
    ).table
