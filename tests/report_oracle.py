"""The test oracle: what `connector report` must answer, recomputed in plain Python one version
at a time from the rules in the docstring of `connector/reporting/analytics.py` (not from its
code: nothing here is shared with the engine but the choice of the window, `resolve_window`,
which tests/test_report.py checks on its own). Slow and obvious on purpose.

The rules, as applied here to each version seen in the start or end snapshot:
* counted: its end count is known. Its gain is end count - baseline, never below 0.
* new: counted, absent from the start snapshot, created_at on or after the start date (UTC
  midnight): baseline 0. Otherwise the baseline is its first known count in the window, and
  when that is later than the start it is `counted_from_first_observation` (`first_observed`).
* disappeared: in the start snapshot, not in the end one: listed with no count and no gain.
* `count_decreased`: a known count lower than the one known before it, anywhere in the window.
* Unknown counts at the start or end snapshot are counted (flags), the version itself is left
  out when its end count is unknown. created_at and framework are the last known in the window.
* Groups sort by gain descending then keys ascending (unknown last); `top` keeps the first K.
* The daily series: per group shown and snapshot, how far each counted version's count rose
  above the highest known before (new versions start from 0 at the start snapshot).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from connector.errors import NoDataError
from connector.reporting.window import Window, resolve_window

KEYS = {
    "version": ("org", "model", "version"),
    "model": ("org", "model"),
    "org": ("org",),
    "framework": ("framework",),
}


@dataclass(frozen=True)
class Expected:
    """The report as the rules give it: rows (dicts of plain values), flags and the chart."""

    window: Window
    rows: list[dict[str, Any]]
    total_gained: int
    total_groups: int
    flags: dict[str, int]
    daily: list[tuple[str, date, int]]  # (group, snapshot, downloads gained since the previous)


def read_rows(root: Path) -> dict[date, list[dict[str, Any]]]:
    """Every row of every partition, by snapshot day."""
    days: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted((root / "model_versions").glob("snapshot_date=*/*.parquet")):
        days[date.fromisoformat(path.parent.name.split("=")[1])] += pq.read_table(path).to_pylist()
    return days


def first(values: list[Any]) -> Any:
    known = [value for value in values if value is not None]
    return known[0] if known else None


def version_facts(history: dict[date, dict[str, Any]], window: Window) -> dict[str, Any] | None:
    """One version's line of the report, from its rows by day; None when it is not listed."""
    at_start, at_end = history.get(window.start), history.get(window.end)
    days = sorted(history)
    counts = [(day, history[day]["download_count"]) for day in days]
    known = [(day, count) for day, count in counts if count is not None]
    created = first([history[day]["created_at"] for day in reversed(days)])
    end_count = at_end["download_count"] if at_end else None
    counted = end_count is not None
    disappeared = at_start is not None and at_end is None
    if not counted and not disappeared:
        return None
    midnight = datetime(window.start.year, window.start.month, window.start.day, tzinfo=UTC)
    new = counted and at_start is None and created is not None and created >= midnight
    late = counted and not new and known[0][0] > window.start
    if counted:
        baseline = 0 if new else known[0][1]
    else:
        baseline = at_start["download_count"] if at_start else None
    return {
        "framework": first([history[day]["framework"] for day in reversed(days)]),
        "created_at": created,
        "download_count": end_count,
        "baseline_count": baseline,
        "downloads_gained": max(end_count - baseline, 0) if counted else 0,
        "is_new": new,
        "counted_from_first_observation": late,
        "first_observed": known[0][0] if late else None,
        "count_decreased": any(b < a for (_, a), (_, b) in pairwise(known)),
        "disappeared": disappeared,
        "counted": counted,
        "history": known,
    }


def label(row: dict[str, Any], by: str) -> str:
    if by == "framework":
        return row["framework"] if row["framework"] is not None else "(unknown)"
    names = {"org": "{org}", "model": "{org}/{model}", "version": "{org}/{model}@{version}"}
    return names[by].format(**row)


def new_name(version: dict[str, Any], by: str) -> str:
    return {
        "model": "{version}",
        "org": "{model}@{version}",
        "framework": "{org}/{model}@{version}",
    }[by].format(**version)


def group(versions: list[dict[str, Any]], by: str, days: int) -> list[dict[str, Any]]:
    """One row per group: versions as they are (by version) or summed up."""
    if by == "version":
        rows = [dict(version) for version in versions]
    else:
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        for version in versions:
            groups[tuple(version[key] for key in KEYS[by])].append(version)
        rows = []
        for key, members in groups.items():
            counted = [m for m in members if m["counted"]]
            rows.append(
                {
                    **dict(zip(KEYS[by], key, strict=True)),
                    "download_count": sum(m["download_count"] for m in counted)
                    if counted
                    else None,
                    "downloads_gained": sum(m["downloads_gained"] for m in members),
                    "versions": len(counted),
                    "new_versions": sum(m["is_new"] for m in members),
                    "new_version_names": ", ".join(
                        sorted(new_name(m, by) for m in members if m["is_new"])
                    ),
                    "versions_from_first_observation": sum(
                        m["counted_from_first_observation"] for m in members
                    ),
                    "versions_count_decreased": sum(m["count_decreased"] for m in members),
                    "versions_disappeared": sum(m["disappeared"] for m in members),
                    "members": members,
                }
            )
    for row in rows:
        row["gained_per_day"] = row["downloads_gained"] / days
    # keys ascending with unknown (None) last, then a stable sort by gain, descending
    for key in reversed(KEYS[by]):
        rows.sort(key=lambda row, key=key: (row[key] is None, row[key] or ""))
    rows.sort(key=lambda row: -row["downloads_gained"])
    return rows


def daily(rows: list[dict[str, Any]], by: str, window: Window) -> list[tuple[str, date, int]]:
    """Per group shown and consecutive snapshot: the gains above each version's highest."""
    series = []
    for row in rows:
        members = row["members"] if by != "version" else [row]
        gained: dict[date, int] = defaultdict(int)
        for version in members:
            if not version["counted"]:
                continue
            history = ([(window.start, 0)] if version["is_new"] else []) + version["history"]
            highest = history[0][1]
            for day, count in history[1:]:
                gained[day] += max(count - highest, 0)
                highest = max(highest, count)
        series += [(label(row, by), day, gained[day]) for day in window.snapshots[1:]]
    return series


def report(
    root: Path,
    *,
    days: int | None = None,
    start: date | None = None,
    end: date | None = None,
    by: str = "model",
    top: int | None = 20,
    org: list[str] | None = None,
    model: list[str] | None = None,
) -> Expected:
    """The report over the dataset under `root`, by the rules above."""
    rows_by_day = read_rows(root)
    window = resolve_window(sorted(rows_by_day), days=days, start=start, end=end)
    histories: dict[tuple[str, str, str], dict[date, dict[str, Any]]] = defaultdict(dict)
    for day in window.snapshots:
        for row in rows_by_day[day]:
            if (not org or row["org"] in org) and (not model or row["model"] in model):
                histories[row["org"], row["model"], row["version"]][day] = row
    if not histories:
        raise NoDataError("no rows in the window")
    starts = [h[window.start] for h in histories.values() if window.start in h]
    ends = [h[window.end] for h in histories.values() if window.end in h]
    versions = []
    for (o, m, v), history in sorted(histories.items()):
        facts = version_facts(history, window)
        if facts is not None:
            versions.append({"org": o, "model": m, "version": v, **facts})
    table = group(versions, by, window.days)
    total = sum(row["downloads_gained"] for row in table)
    for row in table:
        row["share_of_gained"] = row["downloads_gained"] / total if total else 0.0
    shown = table[:top] if top else table
    flags = {
        "unknown_rows_at_start": sum(row["download_count"] is None for row in starts),
        "unknown_rows_at_end": sum(row["download_count"] is None for row in ends),
        "new_versions": sum(v["is_new"] for v in versions),
        "versions_from_first_observation": sum(
            v["counted_from_first_observation"] for v in versions
        ),
        "versions_count_decreased": sum(v["count_decreased"] for v in versions),
        "versions_disappeared": sum(v["disappeared"] for v in versions),
    }
    flags["excluded_unknown_rows"] = flags["unknown_rows_at_start"] + flags["unknown_rows_at_end"]
    return Expected(window, shown, total, len(table), flags, daily(shown, by, window))
