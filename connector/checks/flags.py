"""Flags for the readers of the dataset: snapshots published with overridden checks, or with
download counters that went down.

`connector report` adds these notes (text and HTML alike) from the manifests of the snapshots in
its window, so a number that rests on a snapshot a person accepted despite its checks, or on
counters a registry reset, never reads as if nothing happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from connector.checks.document import failing_text
from connector.checks.status import read_published
from connector.dataset.store import Store

NAMED_DAYS = 5  # days named per note; the rest are counted


def check_notes(store: Store, snapshots: Sequence[date]) -> list[str]:
    """Notes about the snapshots `snapshots` (a report's window, its start first): which were
    published with failing checks overridden (`connector accept`), and which, after the start,
    have counters that went down since the snapshot before them."""
    manifests, problems = read_published(store, snapshots)
    overridden: list[str] = []
    decreased: list[str] = []
    for day, (_, checks) in sorted(manifests.items()):
        if checks is None:
            continue
        if checks.verdict == "overridden":
            by = checks.override.describe() if checks.override else "unknown"
            overridden.append(f"{day} ({failing_text(checks)}; by {by})")
        counts = checks.result("counts_decreased")
        if day != snapshots[0] and counts is not None and counts.value:
            decreased.append(f"{day} ({counts.value:.2%} of versions)")
    notes = []
    if overridden:
        notes.append(
            f"{len(overridden)} snapshot(s) in the window were published with failing checks "
            f"overridden: {_named(overridden)}"
        )
    if decreased:
        notes.append(
            f"{len(decreased)} snapshot(s) in the window have download counts that went down "
            f"since the snapshot before (counts_decreased): {_named(decreased)}"
        )
    if problems:
        notes.append(f"the checks of {len(problems)} snapshot(s) could not be read: {problems[0]}")
    return notes


def _named(items: list[str]) -> str:
    more = len(items) - NAMED_DAYS
    return "; ".join(items[:NAMED_DAYS]) + (f"; and {more} more" if more > 0 else "")
