"""One run's outcome, assembled in one place.

A run (one process, one shard, or a publish of staged shards) adds what it sees to a `Tally`;
`summarize` turns the tally and how the run ended into the frozen `RunSummary`, its exit code's
facts included, and `publish_if_allowed` is the publish step every publishing path shares (the
publish guard, the manifest built from the summary, the atomic publish).
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from connector._version import __version__
from connector.config import Config
from connector.dataset.writer import PublishResult, SnapshotWriter
from connector.errors import OutputError, RunOutcome, TargetFailure
from connector.extraction.guards import describe_missing
from connector.extraction.interrupt import Interrupt, signal_name
from connector.extraction.summary import RunSummary, build_manifest, success_ratio

log = logging.getLogger(__name__)

UPGRADE_HINT = "upgrade the connector: pip install --upgrade model-versions-connector"


@dataclass(frozen=True)
class RunInfo:
    """What is fixed before the first request: identity, output and the publish guard."""

    run_id: str
    day: date
    uri: str
    started_at: str
    min_success_ratio: float  # 0 for a shard: a shard publishes nothing, so it has no guard
    backdated: bool = False
    warnings: list[str] = field(default_factory=list)
    shard: str | None = None  # "K/N" for a shard run
    shards: int | None = None  # how many shards a publish merges


@dataclass
class Tally:
    """What a run has seen so far; read once, at the end, into the frozen RunSummary."""

    attempted: int = 0
    succeeded: int = 0
    failures: list[TargetFailure] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    blocked_orgs: list[str] = field(default_factory=list)  # a 401/403 refused their token
    incompatible: TargetFailure | None = None  # the first 426
    rejected_dir: str | None = None
    requests: dict[str, int] = field(default_factory=dict)
    requests_by_operation: dict[str, int] = field(default_factory=dict)
    discovery_failed_orgs: list[str] = field(default_factory=list)  # their listing failed
    warnings: list[str] = field(default_factory=list)  # found on the way (discovery)

    def block(self, org: str) -> None:
        if org not in self.blocked_orgs:
            self.blocked_orgs.append(org)

    def guard_fails(self, min_success_ratio: float) -> bool:
        return success_ratio(self.succeeded, self.attempted) < min_success_ratio

    def discovery_blocks(self, min_success_ratio: float) -> bool:
        """A failed listing hides how many models an org has: publishing could silently shrink
        the snapshot, so it is refused unless the guard is off (min_success_ratio 0)."""
        return bool(self.discovery_failed_orgs) and min_success_ratio > 0


@dataclass(frozen=True)
class Stop:
    """A run stopped from outside (a signal, KeyboardInterrupt) or by a bug in this thread."""

    message: str
    terminated: bool = False  # SIGTERM (exit 143) rather than SIGINT or an exception (130)
    bug: bool = False  # an unexpected exception (exit 1)


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
    published: PublishResult | None = None
    output_error: OutputError | None = None
    missing: list[tuple[str, str]] = field(default_factory=list)  # the half-config guard
    staged: str | None = None  # a shard run's staged part
    rows: int = 0  # rows staged by a shard run (a publish reports its own)
    files: list[str] = field(default_factory=list)
    stopped: Stop | None = None


def summarize(info: RunInfo, tally: Tally, ending: Ending) -> RunSummary:
    """The one place a RunSummary is assembled, the facts of its exit code included."""
    stopped = ending.stopped
    outcome = RunOutcome(
        terminated=stopped is not None and stopped.terminated,
        interrupted=stopped is not None and not stopped.terminated and not stopped.bug,
        internal_error=stopped is not None and stopped.bug,
        incompatible_api=tally.incompatible is not None,
        output_failed=ending.output_error is not None,
        orgs_blocked=bool(tally.blocked_orgs),
        half_config=bool(ending.missing),
        discovery_failed=tally.discovery_blocks(info.min_success_ratio),
        guard_failed=tally.guard_fails(info.min_success_ratio),
        targets_failed=bool(tally.failures),
    )
    published = ending.published
    return RunSummary(
        run_id=info.run_id,
        snapshot_date=info.day.isoformat(),
        output_uri=info.uri,
        started_at=info.started_at,
        backdated=info.backdated,
        finished_at=ending.finished_at,
        elapsed_seconds=round(ending.elapsed, 3),
        targets_attempted=tally.attempted,
        targets_succeeded=tally.succeeded,
        rows=published.rows if published else ending.rows,
        files=list(published.files) if published else list(ending.files),
        requests=dict(sorted(tally.requests.items())),
        requests_by_operation=dict(sorted(tally.requests_by_operation.items())),
        failures=tuple(sorted(tally.failures, key=lambda f: (f.org, f.model or ""))),
        dropped_versions=sorted(tally.dropped, key=lambda d: (d["org"], d["model"], d["version"])),
        auth_failed_orgs=list(tally.blocked_orgs),
        published=published is not None,
        partition=str(published.partition) if published else None,
        rejected_dir=tally.rejected_dir,
        missing_targets=[f"{org}/{model}" for org, model in ending.missing],
        shard=info.shard,
        staged=ending.staged,
        shards=info.shards,
        message=_message(info, tally, outcome, ending),
        warnings=[*info.warnings, *tally.warnings],
        discovery_failed_orgs=sorted(tally.discovery_failed_orgs),
        run_outcome=outcome,
    )


def _message(info: RunInfo, tally: Tally, outcome: RunOutcome, ending: Ending) -> str | None:
    """The note that explains the exit code, for the outcome that decided it."""
    if ending.stopped is not None:
        return ending.stopped.message
    if tally.incompatible is not None:
        return (
            f"the registry no longer accepts this connector version ({__version__}): "
            f"HTTP 426 {tally.incompatible.detail}; {UPGRADE_HINT}"
        )
    if ending.output_error is not None:
        return str(ending.output_error)
    if ending.missing:
        return describe_missing(ending.missing, info.day)
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
            f"({ratio:.0%} < min_success_ratio {info.min_success_ratio:.0%}); nothing was "
            "published so the previous snapshot stays as it was"
        )
    return None


def publish_if_allowed(
    config: Config, info: RunInfo, tally: Tally, writer: SnapshotWriter
) -> tuple[str | None, PublishResult | None]:
    """Publish what the writer holds unless a 426 was seen or the publish guard refuses.
    Returns when the run finished and what it published ((None, None): nothing). Raises
    OutputError when the publish fails."""
    if (
        tally.incompatible is not None
        or tally.discovery_blocks(info.min_success_ratio)
        or tally.guard_fails(info.min_success_ratio)
    ):
        return None, None
    finished_at = now()
    draft = summarize(info, tally, Ending(finished_at=finished_at))
    manifest = build_manifest(
        draft, registry=config.registry.base_url, min_success_ratio=info.min_success_ratio
    )
    published = writer.publish(manifest)
    log.info(
        "published %d rows to %s",
        published.rows,
        published.partition,
        extra={"event": "published", "run_id": info.run_id},
    )
    return finished_at, published


def now() -> str:
    """The current time as the summary and manifest record it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
