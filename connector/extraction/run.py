"""One extract run: plan targets, fetch them concurrently, isolate failures, publish a snapshot.

Memory stays flat however many models there are: at most `concurrency` targets are in flight
and `2 x concurrency` finished ones wait for the writer, which flushes rows in bounded batches.
What the run sees goes into a `Tally`; the summary is built from it once (`outcome.summarize`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from connector.config import Config, validate_output
from connector.dataset.flatten import Row
from connector.dataset.layout import REJECTED_DIR
from connector.dataset.lock import open_run_lock
from connector.dataset.published import published_targets
from connector.dataset.rejected import save_rejected
from connector.dataset.storage import (
    STORAGE_ERRORS,
    Location,
    is_object_uri,
    local_location,
    locate,
)
from connector.dataset.writer import PublishResult, SnapshotWriter, open_snapshot_writer, recover
from connector.errors import (
    ErrorType,
    OrgBlockedError,
    OutputError,
    PayloadError,
    RunAbortedError,
    SkippedError,
    TargetError,
    TargetFailedError,
    TargetFailure,
)
from connector.extraction.guards import check_snapshot_date, describe_missing, missing_targets
from connector.extraction.interrupt import Interrupt, signal_name
from connector.extraction.outcome import (
    UPGRADE_HINT,
    Ending,
    RunInfo,
    Stop,
    Tally,
    now,
    publish_if_allowed,
    stopped_by_signal,
    summarize,
)
from connector.extraction.plan import TargetPlan, plan_targets
from connector.extraction.progress import RejectedOrgs, RunProgress
from connector.extraction.records import run_settings, write_run_record
from connector.extraction.sharding import Shard, select
from connector.extraction.summary import RunSummary
from connector.extraction.target import DroppedVersion, fetch_target
from connector.extraction.workers import WorkerPool
from connector.http.budget import Share
from connector.http.client import RegistryClient

log = logging.getLogger(__name__)

_EVIDENCE_ERRORS: tuple[type[BaseException], ...] = (*STORAGE_ERRORS, OutputError)

__all__ = ["UPGRADE_HINT", "extract", "fetch_all"]


@dataclass(frozen=True)
class _TargetOutcome:
    """How one target ended: its rows, or the failure record built once where it failed."""

    org: str
    model: str
    elapsed: float
    rows: list[Row] = field(default_factory=list)
    dropped: list[DroppedVersion] = field(default_factory=list)
    failure: TargetFailure | None = None
    rejected_body: bytes | None = None  # a 2xx body that failed validation, for _rejected/
    rejected_request: str | None = None  # the request that body answered
    warnings: list[str] = field(default_factory=list)  # e.g. its details were capped
    blocks_org: bool = False  # a 401/403: the org's token was refused
    incompatible: bool = False  # a 426: the run aborts
    share: Share | None = None  # the memory budget its rows hold until they are written


class _Run:
    """The fetch side of one run, shared by the worker threads."""

    def __init__(self, config: Config, client: RegistryClient, cancelled: threading.Event) -> None:
        self.client = client
        self.cancelled = cancelled
        self.secrets = config.secrets()
        self.credentials = {org.name: config.credential_for(org.name) for org in config.orgs}
        self.version_detail = config.registry.version_detail
        self.concurrency = config.registry.concurrency

    def fetch(self, target: tuple[str, str]) -> _TargetOutcome:
        """Runs in a worker thread: fetch and flatten one target. Never raises: whatever goes
        wrong with one target, even a bug, fails that target and not the run."""
        org, model = target
        started = time.monotonic()
        try:
            if self.cancelled.is_set():
                raise SkippedError(
                    "not attempted: the run was aborted", org=org, model=model, attempts=0
                )
            fetched = fetch_target(
                self.client, org, model, self.credentials[org], self.version_detail
            )
        except TargetError as exc:
            return self._failed(org, model, started, exc)
        except Exception as exc:  # a bug: keep the run going, say so loudly
            log.exception("unexpected error on %s/%s", org, model, extra={"event": "bug"})
            bug = TargetFailedError(
                f"unexpected {type(exc).__name__}: {exc} (a bug; please report it)",
                org=org,
                model=model,
                error_type=ErrorType.INTERNAL_ERROR,
            )
            return self._failed(org, model, started, bug)
        return _TargetOutcome(
            org,
            model,
            time.monotonic() - started,
            rows=fetched.rows,
            dropped=fetched.dropped,
            warnings=fetched.warnings,
            share=fetched.share,
        )

    def _failed(self, org: str, model: str, started: float, error: TargetError) -> _TargetOutcome:
        if isinstance(error, RunAbortedError):
            self.cancelled.set()  # no new requests, no more retries
        return _failed_outcome(org, model, time.monotonic() - started, error, self.secrets)


def _failed_outcome(
    org: str, model: str, elapsed: float, error: TargetError, secrets: list[str]
) -> _TargetOutcome:
    """The outcome of a failed target: its failure record, built here once."""
    return _TargetOutcome(
        org,
        model,
        elapsed,
        failure=error.failure(secrets),
        rejected_body=error.raw if isinstance(error, PayloadError) else None,
        rejected_request=error.request,
        blocks_org=isinstance(error, OrgBlockedError),
        incompatible=isinstance(error, RunAbortedError),
    )


def extract(
    config: Config,
    date: date | None = None,
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
) -> RunSummary:
    """Run one snapshot. Returns a RunSummary whose `exit_code` says how it went.

    `date` defaults to today (UTC); a date before yesterday needs `allow_backdate` (see
    `guards.check_snapshot_date`). `clock` returns the current time (timezone-aware); tests
    inject it to place a run on either side of midnight. Unless `replace`, a run that does not
    target every model the date's published partition holds publishes nothing (exit code 8).
    Every run that gets the output lock writes its record under `_runs/` (see `records`).
    `shard=(K, N)` fetches only shard K of N and stages it for `publish(config, date,
    shards=N)` instead of publishing; `processes=P` runs P shard processes and publishes once.

    Raises SnapshotDateError (exit code 2) for a refused date, LockHeldError when another run
    holds the output (or the shard), and OutputError when the output location cannot be used
    at all; every other outcome is reported in the summary.

    `interrupt.request()` (the CLI calls it on SIGINT/SIGTERM) stops the run promptly: requests
    in flight are cut, nothing is published, and the summary's outcome is `interrupted`. An
    exception raised in this thread meanwhile (KeyboardInterrupt, an orchestrator's timeout)
    cuts the requests in flight too, cleans up, writes the run record, and propagates.
    """
    started = time.monotonic()
    observed_at = (clock or _utc_now)()
    day = date or observed_at.astimezone(UTC).date()
    backdated = check_snapshot_date(day, observed_at, allow_backdate=allow_backdate)
    if shard is not None or processes != 1:
        from connector.extraction.fanout import extract_sharded

        return extract_sharded(
            config,
            day,
            output,
            min_success_ratio,
            progress,
            shard=shard,
            processes=processes,
            backdated=backdated,
            replace=replace,
            interrupt=interrupt,
        )
    uri = validate_output({"uri": output}).uri if output else config.output.uri
    options = config.output.storage_mapping() if is_object_uri(uri) else None
    root = locate(uri, options)
    ratio = config.output.min_success_ratio if min_success_ratio is None else min_success_ratio
    info = RunInfo(
        run_id=uuid.uuid4().hex,
        day=day,
        uri=str(uri),
        started_at=observed_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        min_success_ratio=ratio,
        backdated=backdated,
        warnings=list(config.warnings),
    )
    settings = run_settings(
        config,
        output=str(uri),
        date=date.isoformat() if date else None,
        min_success_ratio=ratio,
        allow_backdate=allow_backdate,
        replace=replace,
    )
    tally = Tally()
    finished_at: str | None = None
    published: PublishResult | None = None
    output_error: OutputError | None = None
    missing: list[tuple[str, str]] = []
    stopped: Stop | None = None
    own_interrupt = interrupt is None
    interrupt = interrupt or Interrupt()
    with open_run_lock(root, info.run_id) as lock:
        for action in recover(root):
            log.warning("%s", action, extra={"event": "staging_recovered"})
        try:
            if not replace:  # the half-config guard: publishing must not lose a published model
                missing = missing_targets(
                    published_targets(root, day), config.targets(), config.covers
                )
            if missing:
                log.error(
                    "%s",
                    describe_missing(missing, day),
                    extra={"event": "not_published", "run_id": info.run_id},
                )
            else:
                finished_at, published = _run_and_publish(
                    config, info, tally, root, progress, interrupt, lock.check
                )
        except OutputError as exc:
            output_error = exc
            log.error("output failure: %s", exc, extra={"event": "output_failed"})
        except BaseException as exc:  # KeyboardInterrupt, an orchestrator's timeout, a bug
            stopped = _stopped_by_exception(exc, info)
            raise
        finally:
            if own_interrupt:
                interrupt.close()
            if stopped is None and published is None and interrupt.requested:
                stopped = stopped_by_signal(interrupt)
            ending = Ending(
                finished_at=finished_at or now(),
                elapsed=time.monotonic() - started,
                published=published,
                output_error=output_error,
                missing=missing,
                stopped=stopped,
            )
            summary = summarize(info, tally, ending)
            record = write_run_record(
                root,
                summary,
                settings,
                keep=config.output.keep_run_records,
                secrets=config.secrets(),
            )
    return dataclasses.replace(summary, record=str(record)) if record is not None else summary


def _stopped_by_exception(exc: BaseException, info: RunInfo) -> Stop:
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
    log.error("%s", stop.message, extra={"event": "interrupted", "run_id": info.run_id})
    return stop


def _run_and_publish(
    config: Config,
    info: RunInfo,
    tally: Tally,
    root: Location,
    progress: bool | None,
    interrupt: Interrupt,
    check_lock: Callable[[], None],
) -> tuple[str | None, PublishResult | None]:
    """Fetch every target into a staged partition and, if the guards allow, publish it. A stop
    requested once the publish has begun lets it finish (it is one atomic swap)."""
    writer = open_snapshot_writer(root, info.day, info.run_id, batch_rows=config.output.batch_rows)
    published: PublishResult | None = None
    try:
        fetch_all(config, info, tally, writer, root, progress, interrupt=interrupt)
        if interrupt.requested:
            return None, None
        check_lock()  # on object storage a lease can be lost: never publish over a newer holder
        finished_at, published = publish_if_allowed(config, info, tally, writer)
        return finished_at, published
    finally:
        if published is None:
            writer.discard()


def fetch_all(
    config: Config,
    info: RunInfo,
    tally: Tally,
    writer: SnapshotWriter,
    root: Path | Location,
    progress: bool | None,
    *,
    shard: Shard | None = None,
    tick: Callable[[bool], None] | None = None,
    interrupt: Interrupt | None = None,
) -> list[tuple[str, str]]:
    """Fetch every target (of the shard, if any) into the writer, counting what happens in
    `tally`; returns the targets.

    A stop requested through `interrupt` cuts the requests in flight and starts no new one."""
    own_interrupt = interrupt is None
    interrupt = interrupt or Interrupt()
    try:
        return _fetch_targets(config, info, tally, writer, root, progress, shard, tick, interrupt)
    finally:
        if own_interrupt:
            interrupt.close()


def _fetch_targets(
    config: Config,
    info: RunInfo,
    tally: Tally,
    writer: SnapshotWriter,
    root: Path | Location,
    progress: bool | None,
    shard: Shard | None,
    tick: Callable[[bool], None] | None,
    interrupt: Interrupt,
) -> list[tuple[str, str]]:
    """Resolve the targets (discovery included) and fetch those of the shard (all, if none)."""
    secrets = config.secrets()
    show_progress = sys.stderr.isatty() if progress is None else progress
    # Set on a 426, or when the run stops early: no new requests, no more retries.
    cancelled = threading.Event()
    targets: list[tuple[str, str]] = []
    with (
        RegistryClient(config.registry, secrets=secrets, cancelled=cancelled) as client,
        interrupt.watch(lambda: _stop(client, interrupt)),
    ):
        run = _Run(config, client, cancelled)
        rejected = RejectedOrgs(client.blocked)
        try:
            plan = plan_targets(config, client)
            targets = select(plan.targets, shard)
            _record_plan(tally, writer, plan, root, info.day, secrets)
            tally.attempted += len(targets)
            log.info(
                "extracting %d target(s) into %s",
                len(targets),
                info.uri,
                extra={"event": "run_started", "run_id": info.run_id},
            )
            with RunProgress(len(targets), enabled=show_progress) as bar:

                def advance(ok: bool) -> None:
                    bar.advance(ok=ok)
                    if tick is not None:
                        tick(ok)

                _fetch_pool(
                    tally, writer, root, info.day, run, targets, advance, interrupt, rejected
                )
        finally:  # also when the writer fails mid-run: the summary must not under-report
            rejected.log(secrets)
            tally.requests = dict(client.requests_by_status)
            tally.requests_by_operation = dict(client.requests_by_operation)
    return targets


def _record_plan(
    tally: Tally,
    writer: SnapshotWriter,
    plan: TargetPlan,
    root: Path | Location,
    day: date,
    secrets: list[str],
) -> None:
    """Discovery's failures count as failed targets (one per org, against the publish guard)
    and its warnings (a pattern matching nothing, an unusable listed name) are kept."""
    for warning in plan.warnings:
        tally.warnings.append(warning)
        log.warning("%s", warning, extra={"event": "discovery_warning"})
    tally.discovery_failed_orgs = plan.failed_orgs
    tally.attempted += len(plan.failures)
    for error in plan.failures:
        outcome = _failed_outcome(error.org or "", error.model or "", 0.0, error, secrets)
        _record(tally, writer, outcome, root, day, secrets)


def _fetch_pool(
    tally: Tally,
    writer: SnapshotWriter,
    root: Path | Location,
    day: date,
    run: _Run,
    targets: list[tuple[str, str]],
    advance: Callable[[bool], None],
    interrupt: Interrupt,
    rejected: RejectedOrgs,
) -> None:
    """Fetch the targets on the worker pool, recording each outcome as it finishes."""
    secrets = run.secrets
    threads = min(run.concurrency, len(targets))
    workers = WorkerPool(run.fetch, targets, threads, name="fetch", abandoned=run.client.abort)
    for outcome in workers:
        failure = outcome.failure
        quiet = failure is not None and rejected.absorb(failure, outcome.blocks_org)
        try:
            _record(tally, writer, outcome, root, day, secrets, quiet=quiet)
        finally:
            # The rows are in the writer (as Arrow): free the Python rows, then their budget.
            outcome.rows.clear()
            if outcome.share is not None:
                outcome.share.release()
        advance(failure is None)
        if run.cancelled.is_set() or interrupt.requested:
            workers.stop()
    why = "interrupted" if interrupt.requested else "aborted"
    for org, model in workers.unstarted():  # left over when a 426 or a signal stopped it
        skipped = SkippedError(
            f"not attempted: the run was {why}", org=org, model=model, attempts=0
        )
        outcome = _TargetOutcome(org, model, 0.0, failure=skipped.failure(secrets))
        _record(tally, writer, outcome, root, day, secrets)


def _stop(client: RegistryClient, interrupt: Interrupt) -> None:
    """Runs in the interrupt's watcher thread as soon as a stop is requested."""
    log.warning(
        "%s received: stopping (requests in flight abandoned, nothing published); "
        "send it again to exit at once",
        signal_name(interrupt.signum),
        extra={"event": "interrupted"},
    )
    client.abort()


def _record(
    tally: Tally,
    writer: SnapshotWriter,
    outcome: _TargetOutcome,
    root: Path | Location,
    day: date,
    secrets: list[str],
    *,
    quiet: bool = False,
) -> None:
    """Add a finished target to the snapshot or the failures; `quiet` failures (those of an org
    whose token was rejected, told once per org) are logged at DEBUG only."""
    fields = {"org": outcome.org, "model": outcome.model, "elapsed": round(outcome.elapsed, 3)}
    failure = outcome.failure
    if failure is None:
        writer.add_rows(outcome.rows)
        tally.succeeded += 1
        tally.dropped += [dropped.to_dict() for dropped in outcome.dropped]
        tally.warnings += outcome.warnings
        log.debug(
            "%s/%s: %d rows",
            outcome.org,
            outcome.model,
            len(outcome.rows),
            extra={"event": "target_done", **fields},
        )
        return
    tally.failures.append(failure)
    if outcome.incompatible and tally.incompatible is None:
        tally.incompatible = failure
    if outcome.blocks_org:
        tally.block(failure.org)
    log.log(
        logging.DEBUG if quiet else logging.ERROR,
        "%s",
        failure.message,
        extra={
            "event": "target_failed",
            "status": failure.status,
            "attempt": failure.attempts,
            **fields,
        },
    )
    if outcome.rejected_body is not None:
        try:
            where = root if isinstance(root, Location) else local_location(root)
            save_rejected(
                where, day, failure, outcome.rejected_body, secrets, outcome.rejected_request
            )
            tally.rejected_dir = where.display(where.join(REJECTED_DIR, day.isoformat()))
        except _EVIDENCE_ERRORS as exc:  # keeping evidence must never cost the run
            log.warning(
                "could not keep the rejected payload of %s/%s: %s",
                outcome.org,
                outcome.model,
                exc,
                extra={"event": "rejected_not_saved", **fields},
            )


def _utc_now() -> datetime:
    return datetime.now(UTC)
