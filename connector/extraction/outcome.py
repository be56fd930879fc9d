"""One run's outcome, assembled in one place.

A run (one part, or a publish of staged parts) adds what it sees to a `Tally`; `summarize` turns
the tally and how the run ended into the frozen `RunSummary`, the facts of its exit code
included: it is the only constructor of a summary. `merge` is the other direction: the tally of a
run made of parts, from the parts' summaries as their records hold them.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector._version import __version__
from connector.errors import RunOutcome, TargetFailure
from connector.extraction.context import RunContext
from connector.extraction.guards import describe_missing
from connector.extraction.interrupt import Interrupt, signal_name
from connector.extraction.summary import MAX_LISTED, RunSummary, first, success_ratio

UPGRADE_HINT = (
    "upgrade the connector: install a newer model-versions-connector wheel or image "
    "(docs/deploy.md), then run again"
)


class Bounded:
    """A list that keeps the `MAX_LISTED` smallest entries by `key` and counts the rest, so a
    registry that fails ten thousand models costs a hundred records, not ten thousand."""

    def __init__(self, key: Any) -> None:
        self._key = key
        self.items: list[Any] = []
        self.left_out = 0

    def add(self, item: Any) -> None:
        self.items.append(item)
        if len(self.items) >= 2 * MAX_LISTED:
            self._trim()

    def _trim(self) -> None:
        self.items.sort(key=self._key)
        self.left_out += max(0, len(self.items) - MAX_LISTED)
        del self.items[MAX_LISTED:]

    def sorted(self) -> list[Any]:
        self._trim()
        return list(self.items)

    @property
    def total(self) -> int:
        return len(self.items) + self.left_out


def _failure_key(failure: TargetFailure) -> tuple[str, str]:
    return (failure.org, failure.model or "")


def _dropped_key(dropped: dict[str, Any]) -> tuple[str, str, str]:
    return (str(dropped["org"]), str(dropped["model"]), str(dropped["version"]))


@dataclass
class Tally:
    """What a run has seen so far; read once, at the end, into the frozen RunSummary."""

    attempted: int = 0
    succeeded: int = 0
    failures: Bounded = field(default_factory=lambda: Bounded(_failure_key))
    dropped: Bounded = field(default_factory=lambda: Bounded(_dropped_key))
    blocked_orgs: list[str] = field(default_factory=list)  # a 401/403 refused their token
    incompatible: TargetFailure | None = None  # the first 426
    rejected_dir: str | None = None
    requests: dict[str, int] = field(default_factory=dict)
    requests_by_operation: dict[str, int] = field(default_factory=dict)
    discovery_failed_orgs: list[str] = field(default_factory=list)  # their listing failed
    warnings: list[str] = field(default_factory=list)  # found on the way (discovery)
    warnings_left_out: int = 0
    rows: int = 0
    files: list[str] = field(default_factory=list)

    def block(self, org: str) -> None:
        if org not in self.blocked_orgs:
            self.blocked_orgs.append(org)

    def warn(self, warning: str) -> None:
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append(warning)
        else:
            self.warnings_left_out += 1

    def guard_fails(self, min_success_ratio: float) -> bool:
        return success_ratio(self.succeeded, self.attempted) < min_success_ratio

    def discovery_blocks(self, min_success_ratio: float) -> bool:
        """A failed listing hides how many models an org has: publishing could silently shrink
        the snapshot, so it is refused unless the guard is off (min_success_ratio 0)."""
        return bool(self.discovery_failed_orgs) and min_success_ratio > 0

    def publish_allowed(self, min_success_ratio: float) -> bool:
        """No 426, no failed listing, and enough targets succeeded (the publish guard)."""
        return not (
            self.incompatible is not None
            or self.discovery_blocks(min_success_ratio)
            or self.guard_fails(min_success_ratio)
        )


@dataclass(frozen=True)
class Stop:
    """A run stopped from outside (a signal, KeyboardInterrupt) or by a bug in this thread."""

    message: str
    terminated: bool = False  # SIGTERM (exit 143) rather than SIGINT or an exception (130)
    bug: bool = False  # an unexpected exception, or a part process that died (exit 1)


def stopped_by_signal(interrupt: Interrupt) -> Stop:
    """A stop requested through `interrupt` before anything was published."""
    return Stop(
        terminated=interrupt.signum == signal.SIGTERM,
        message=(
            f"stopped by {signal_name(interrupt.signum)}: nothing was published; earlier "
            "snapshots are unchanged"
        ),
    )


@dataclass(frozen=True)
class Ending:
    """How a run ended, besides what its tally says."""

    finished_at: str
    elapsed: float = 0.0
    published: Any = None  # a partition.PublishResult
    output_error: BaseException | None = None
    missing: list[tuple[str, str]] = field(default_factory=list)  # the half-config guard
    staged: str | None = None  # a part run's staged part
    stopped: Stop | None = None
    shard: str | None = None  # "K/N" for a part run
    shards: int | None = None  # how many parts a publish merged
    message: str | None = None  # why parts could not be published (a part's own failure)
    checks: dict[str, Any] | None = None  # the `checks` document of the staged day
    held: str | None = None  # where a check held the snapshot (`message` says why)


def summarize(context: RunContext, tally: Tally, ending: Ending) -> RunSummary:
    """The one place a RunSummary is assembled, the facts of its exit code included."""
    stopped = ending.stopped
    ratio = 0.0 if ending.shard else context.min_success_ratio  # a part has no guard
    outcome = RunOutcome(
        terminated=stopped is not None and stopped.terminated,
        interrupted=stopped is not None and not stopped.terminated and not stopped.bug,
        internal_error=stopped is not None and stopped.bug,
        incompatible_api=tally.incompatible is not None,
        output_failed=ending.output_error is not None,
        held=ending.held is not None,
        orgs_blocked=bool(tally.blocked_orgs),
        half_config=bool(ending.missing),
        discovery_failed=tally.discovery_blocks(ratio),
        guard_failed=tally.guard_fails(ratio),
        targets_failed=tally.failures.total > 0,
    )
    published = ending.published
    failures, dropped = tally.failures.sorted(), tally.dropped.sorted()  # bounded: count known
    missing, missing_left_out = first(f"{org}/{model}" for org, model in ending.missing)
    warnings, warnings_left_out = first(dict.fromkeys([*context.warnings, *tally.warnings]))
    omitted = {
        "failures": tally.failures.left_out,
        "dropped_versions": tally.dropped.left_out,
        "warnings": warnings_left_out + tally.warnings_left_out,
        "missing_targets": missing_left_out,
    }
    return RunSummary(
        run_id=context.run_id,
        snapshot_date=context.day.isoformat(),
        output_uri=context.store.uri,
        started_at=context.started_at,
        registry=context.registry,
        backdated=context.backdated,
        finished_at=ending.finished_at,
        elapsed_seconds=round(ending.elapsed, 3),
        targets_attempted=tally.attempted,
        targets_succeeded=tally.succeeded,
        rows=published.rows if published else tally.rows,
        files=list(published.files) if published else list(tally.files),
        requests=dict(sorted(tally.requests.items())),
        requests_by_operation=dict(sorted(tally.requests_by_operation.items())),
        failures=tuple(failures),
        dropped_versions=dropped,
        auth_failed_orgs=list(tally.blocked_orgs),
        published=published is not None,
        partition=str(published.partition) if published else None,
        checks=ending.checks,
        held=ending.held,
        rejected_dir=tally.rejected_dir,
        missing_targets=missing,
        shard=ending.shard,
        staged=ending.staged,
        shards=ending.shards,
        message=_message(context, tally, outcome, ending),
        warnings=warnings,
        omitted={key: count for key, count in omitted.items() if count},
        discovery_failed_orgs=sorted(tally.discovery_failed_orgs),
        run_outcome=outcome,
    )


def _message(context: RunContext, tally: Tally, outcome: RunOutcome, ending: Ending) -> str | None:
    """The note that explains the exit code, for the outcome that decided it."""
    if ending.stopped is not None:
        return ending.stopped.message
    if ending.message is not None:
        return ending.message
    if tally.incompatible is not None:
        return (
            f"the registry no longer accepts this connector version ({__version__}): "
            f"HTTP 426 {tally.incompatible.detail}; {UPGRADE_HINT}"
        )
    if ending.output_error is not None:
        return str(ending.output_error)
    if ending.missing:
        return describe_missing(ending.missing, context.day)
    if outcome.discovery_failed:
        return (
            f"discovery failed for org(s) {', '.join(tally.discovery_failed_orgs)}: how many "
            "models they have is unknown, so publishing could silently shrink the snapshot; "
            "nothing was published so the previous snapshot stays as it was "
            "(min_success_ratio 0 publishes anyway)"
        )
    if outcome.guard_failed:
        ratio = success_ratio(tally.succeeded, tally.attempted)
        return (
            f"only {tally.succeeded} of {tally.attempted} targets succeeded "
            f"({ratio:.0%} < min_success_ratio {context.min_success_ratio:.0%}); nothing was "
            "published so the previous snapshot stays as it was"
        )
    return None


def merge(parts: Iterable[RunSummary]) -> Tally:
    """One tally for a run made of parts: targets, requests and failures added up. Every part
    lists a failed listing of an org itself (each plans its own targets): counted once."""
    tally = Tally()
    seen: set[tuple[str, str]] = set()
    targets = 0
    for part in parts:
        targets += part.targets_attempted
        tally.succeeded += part.targets_succeeded
        for failure in part.failures:
            key = _failure_key(failure)
            if key in seen:
                targets -= 1  # the same org's failed listing, reported by another part
                continue
            seen.add(key)
            tally.failures.add(failure)
        tally.failures.left_out += part.omitted.get("failures", 0)
        for dropped in part.dropped_versions:
            tally.dropped.add(dropped)
        tally.dropped.left_out += part.omitted.get("dropped_versions", 0)
        for org in part.discovery_failed_orgs:
            if org not in tally.discovery_failed_orgs:
                tally.discovery_failed_orgs.append(org)
        for org in part.auth_failed_orgs:
            tally.block(org)
        for warning in part.warnings:
            if warning not in tally.warnings:
                tally.warn(warning)
        if part.run_outcome.incompatible_api and tally.incompatible is None:
            tally.incompatible = next(
                (f for f in part.failures if f.error_type == "upgrade_required"), None
            )
        _add_counts(tally.requests, part.requests)
        _add_counts(tally.requests_by_operation, part.requests_by_operation)
        tally.rejected_dir = tally.rejected_dir or part.rejected_dir
        tally.rows += part.rows
    tally.attempted = targets
    return tally


def _add_counts(total: dict[str, int], more: dict[str, Any]) -> None:
    for key, number in more.items():
        total[key] = total.get(key, 0) + int(number)


def now() -> str:
    """The current time as the summary and manifest record it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
