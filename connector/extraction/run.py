"""One extract run, in one shape: plan → stage K parts → check → publish.

K is 1 for a one-process run (the part is staged in this process), P with `--processes P` (P
child processes, `connector.extraction.processes`); `--shard K/N` stages part K only and leaves
the publish to `connector publish --shards N` (`connector.extraction.publish`), which ends every
path. Each part plans its own targets (discovery) and fetches those its hash names
(`connector.extraction.stage`). The context of the run (`RunContext`) is built here, once.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

from connector.config import Config
from connector.dataset import partition
from connector.dataset.layout import LOCK_NAME
from connector.dataset.published import published_targets
from connector.dates import as_optional_day
from connector.errors import ConfigError, OutputError
from connector.extraction import lineage
from connector.extraction.context import RunContext
from connector.extraction.guards import check_snapshot_date, describe_missing, missing_targets
from connector.extraction.interrupt import Interrupt
from connector.extraction.outcome import (
    Ending,
    Stop,
    Tally,
    merge,
    now,
    stopped_by_signal,
    summarize,
)
from connector.extraction.processes import stage_in_processes
from connector.extraction.publish import publish_parts
from connector.extraction.records import recorded, run_settings
from connector.extraction.sharding import Shard, check_shard
from connector.extraction.stage import stage_part
from connector.extraction.summary import RunSummary
from connector.loggers import get_logger

log = get_logger(__name__)

__all__ = ["extract"]


def extract(
    config: Config,
    date: date | str | None = None,
    output: str | None = None,
    *,
    min_success_ratio: float | None = None,
    progress: bool | None = None,
    allow_backdate: bool = False,
    replace: bool = False,
    clock: Callable[[], datetime] | None = None,
    shard: Shard | None = None,
    processes: int = 1,
    interrupt: Interrupt | None = None,
    lineage_parent: str | None = None,
) -> RunSummary:
    """Run one snapshot. Returns a RunSummary whose `exit_code` says how it went.

    `date` (a `datetime.date` or `YYYY-MM-DD`) defaults to today (UTC); a date before
    yesterday needs `allow_backdate` (see `guards.check_snapshot_date`). `clock` returns the
    current time (timezone-aware); tests inject it to place a run on either side of midnight.
    Unless `replace`, a run that does not target every model the date's published partition
    holds publishes nothing (exit code 8). Every run that gets the output lock writes its
    record under `_runs/` (see `records`). `shard=(K, N)` fetches only part K of N and stages
    it for `publish(config, date, shards=N)` instead of publishing; `processes=P` stages P
    parts in P processes and publishes once.

    Raises SnapshotDateError (exit code 2) for a refused date, ConfigError for a bad shard or
    process count, LockHeldError when another run holds the output (or the part), and
    OutputError when the output location cannot be used at all; every other outcome is
    reported in the summary.

    `interrupt.request()` (the CLI calls it on SIGINT/SIGTERM) stops the run promptly: requests
    in flight are cut, nothing is published, and the summary's outcome is `interrupted`. An
    exception raised in this thread meanwhile (KeyboardInterrupt, an orchestrator's timeout)
    cuts the requests in flight too, cleans up, writes the run record, and propagates.

    With OpenLineage configured, the run sends its START and final events
    (`connector.extraction.lineage`); `lineage_parent` is the orchestrator's run as
    `namespace/job/run-uuid` (default: `OPENLINEAGE_PARENT_ID`).
    """
    started = time.monotonic()
    observed_at = (clock or _utc_now)()
    day = as_optional_day(date, "date") or observed_at.astimezone(UTC).date()
    backdated = check_snapshot_date(day, observed_at, allow_backdate=allow_backdate)
    _check_fanout(shard, processes)
    settings = run_settings(
        config,
        output=output or config.output.uri,
        date=day.isoformat() if date is not None else None,
        min_success_ratio=min_success_ratio,
        allow_backdate=allow_backdate,
        replace=replace,
        processes=processes,
    )
    context = RunContext.build(
        config,
        day,
        output=output,
        observed_at=observed_at,
        min_success_ratio=min_success_ratio,
        backdated=backdated,
        replace=replace,
        settings=settings,
    )
    own_interrupt = interrupt is None
    interrupt = interrupt or Interrupt()
    orgs = [org.name for org in config.orgs]
    try:
        if shard is not None:  # one part, staged for a later `publish`: no output lock
            return lineage.observed(
                context,
                lineage.shard_step(context, config.source, orgs, shard),
                lambda: stage_part(
                    context, config, shard, interrupt=interrupt, progress=progress, own_id=True
                ),
                parent=lineage_parent,
            )
        parts = max(1, min(processes, config.registry.concurrency))
        return lineage.observed(
            context,
            lineage.extract_step(context, config.source, orgs),
            lambda: _extract_locked(context, config, parts, interrupt, progress, started),
            parent=lineage_parent,
        )
    finally:
        if own_interrupt:
            interrupt.close()


def _check_fanout(shard: Shard | None, processes: int) -> None:
    if processes < 1:
        raise ConfigError([f"--processes must be at least 1, got {processes}"])
    if shard is not None and processes != 1:
        raise ConfigError(["--shard and --processes cannot be combined: run one or the other"])
    if shard is not None:
        check_shard(shard)


def _extract_locked(
    context: RunContext,
    config: Config,
    processes: int,
    interrupt: Interrupt,
    progress: bool | None,
    started: float,
) -> RunSummary:
    """Under the output lock: recover, guard, stage the parts, publish; always a record."""
    store = context.store
    summary: RunSummary | None = None
    with store.lock(LOCK_NAME, context.run_id) as lock:
        # What earlier runs left is finished or removed first; a layout or journal that cannot
        # be trusted stops the run here, before anything is called (an OutputError, exit 7).
        for action in partition.recover(store):
            log.warning("%s", action, extra={"event": "staging_recovered"})
        try:
            partition.check_format(store, context.table_format)  # before anything is called
            missing = [] if context.replace else _missing(context, config)
            if missing:
                log.error(
                    "%s",
                    describe_missing(missing, context.day),
                    extra={"event": "not_published", "run_id": context.run_id},
                )
                summary = _ended(context, started, Ending(now(), missing=missing))
            else:
                summary = _stage_and_publish(
                    context, config, processes, interrupt, progress, started, lock.check
                )
        except OutputError as exc:
            log.error("output failure: %s", exc, extra={"event": "output_failed"})
            summary = _ended(context, started, Ending(now(), output_error=exc))
        except BaseException as exc:  # KeyboardInterrupt, an orchestrator's timeout, a bug
            summary = _ended(context, started, Ending(now(), stopped=_stopped_by(exc, context)))
            raise
        finally:
            if summary is not None:
                summary = recorded(context, summary)
    return summary


def _missing(context: RunContext, config: Config) -> list[tuple[str, str]]:
    """The half-config guard, before anything is called: models the date's published
    partition holds that this config does not target."""
    existing = published_targets(context.store, context.day)
    return missing_targets(existing, config.targets(), context.covers) if existing else []


def _stage_and_publish(
    context: RunContext,
    config: Config,
    processes: int,
    interrupt: Interrupt,
    progress: bool | None,
    started: float,
    check_lock: Callable[[], None],
) -> RunSummary:
    if processes == 1:
        parts = [stage_part(context, config, (1, 1), interrupt=interrupt, progress=progress)]
    else:
        show = sys.stderr.isatty() if progress is None else progress
        parts = stage_in_processes(context, config, processes, interrupt=interrupt, show=show)
    unstaged = [part for part in parts if part.staged is None]
    if unstaged or interrupt.requested:
        stop = stopped_by_signal(interrupt) if interrupt.requested else None
        return _not_published(context, parts, unstaged, started, stop)
    merged = processes if processes > 1 else None
    return publish_parts(context, processes, check_lock=check_lock, started=started, merged=merged)


def _not_published(
    context: RunContext,
    parts: list[RunSummary],
    unstaged: list[RunSummary],
    started: float,
    stop: Stop | None,
) -> RunSummary:
    """A part could not be staged, or the run was stopped: publish nothing and say which and
    why; the exit code comes from the parts' outcomes together (the most serious)."""
    tally = merge(parts)
    bug = next((part for part in unstaged if part.run_outcome.internal_error), None)
    if stop is None and bug is not None:
        stop = Stop(message=bug.message or "a part process died", bug=True)
    failed = next((part for part in unstaged if part.run_outcome.output_failed), None)
    error = OutputError(failed.message or "a part could not be staged") if failed else None
    if len(parts) == 1:
        message = None
    else:
        reasons = "; ".join(
            f"shard {part.shard}: {part.message or part.exit_code.name.lower()}"
            for part in unstaged
        )
        message = f"nothing was published: {reasons}"
    shards = len(parts) if len(parts) > 1 else None
    ending = Ending(now(), stopped=stop, output_error=error, message=message, shards=shards)
    return _ended(context, started, ending, tally)


def _ended(
    context: RunContext, started: float, ending: Ending, tally: Tally | None = None
) -> RunSummary:
    timed = dataclasses.replace(ending, elapsed=time.monotonic() - started)
    return summarize(context, tally or Tally(), timed)


def _stopped_by(exc: BaseException, context: RunContext) -> Stop:
    """How a run an exception ended is recorded: a bug, or a stop from outside
    (KeyboardInterrupt, an orchestrator's timeout raised in this thread)."""
    if isinstance(exc, Exception):
        return Stop(bug=True, message=f"unexpected {type(exc).__name__} (a bug; please report it)")
    stop = Stop(
        message=(
            f"stopped by {type(exc).__name__}: nothing was published; earlier snapshots are "
            "unchanged"
        )
    )
    log.error("%s", stop.message, extra={"event": "interrupted", "run_id": context.run_id})
    return stop


def _utc_now() -> datetime:
    return datetime.now(UTC)
