"""`connector status` as text: the dataset's health on one screen.

Everything shown comes from documents on the output (manifests, run records, held days), which
anyone with write access could have edited: it is escaped for the terminal (`printable`), so a
run record's message cannot forge a line or drive the terminal.
"""

from __future__ import annotations

from datetime import timedelta

from connector.checks.status import DatasetStatus
from connector.redaction import printable


def render_status(status: DatasetStatus) -> str:
    """The one-screen text of `connector status`."""
    lines = [
        f"dataset    {status.uri}  (checked {status.checked_at.isoformat(timespec='seconds')})"
    ]
    lines += _snapshot_lines(status)
    lines += _held_lines(status)
    if status.overridden:
        lines.append(
            f"overridden {len(status.overridden) + status.omitted.get('overridden', 0)} "
            "published snapshot(s) whose failing checks were overridden (connector accept):"
        )
        lines += [
            f"  {item.day}  {item.failing or 'checks unknown'}; by {item.by}"
            for item in status.overridden
        ]
    if status.last_runs:
        lines.append(f"runs       the last run of the {len(status.last_runs)} most recent day(s):")
        lines += [
            f"  {run.day}  {run.outcome} (exit {run.exit_code})  run {run.run_id}  "
            f"finished {run.finished_at or '?'}" + ("  published" if run.published else "")
            for run in status.last_runs
        ]
    else:
        lines.append("runs       no run records")
    lines += [f"problem    {problem}" for problem in status.problems]
    if status.omitted.get("problems"):
        lines.append(f"problem    ... and {status.omitted['problems']} more")
    return "\n".join(printable(line) for line in lines)  # a newline in a field is escaped


def _snapshot_lines(status: DatasetStatus) -> list[str]:
    if not status.snapshots:
        return ["snapshots  none published yet"]
    lines = [
        f"snapshots  {status.snapshots} from {status.first_snapshot} to {status.last_snapshot}",
        f"newest     observed {_observed(status)}",
    ]
    if status.missing_days:
        shown = ", ".join(day.isoformat() for day in status.missing)
        more = status.missing_days - len(status.missing)
        lines.append(
            f"missing    {status.missing_days} day(s) between them: {shown}"
            + (f" and {more} more" if more > 0 else "")
        )
    else:
        lines.append("missing    no day between them")
    return lines


def _observed(status: DatasetStatus) -> str:
    if status.newest_observed_at is None or status.age is None:
        return "at an unknown time (see the problems)"
    return f"{status.newest_observed_at.isoformat(timespec='seconds')} ({age_text(status.age)} ago)"


def age_text(age: timedelta) -> str:
    """'26.1 h' under three days, else '4.2 d'."""
    hours = age.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 72 else f"{hours / 24:.1f} d"


def _held_lines(status: DatasetStatus) -> list[str]:
    if not status.held:
        return ["held       no snapshot waiting for a decision"]
    count = len(status.held) + status.omitted.get("held", 0)
    lines = [f"held       {count} snapshot(s) waiting for a decision (connector accept / discard):"]
    for held in status.held:
        lines.append(f"  {held.day}  run {held.run_id}: {held.failing or 'checks unknown'}")
    return lines
