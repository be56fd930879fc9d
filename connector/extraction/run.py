"""One extract run: plan targets, fetch them concurrently, isolate failures, publish a snapshot.

Memory stays flat however many models there are: at most `concurrency` targets are in flight
and `2 x concurrency` finished ones wait for the writer, which flushes rows in bounded batches.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from connector._version import __version__
from connector.config import Config, validate_output
from connector.dataset.flatten import Row
from connector.dataset.layout import REJECTED_DIR
from connector.dataset.lock import RunLock
from connector.dataset.published import published_targets
from connector.dataset.rejected import save_rejected
from connector.dataset.schema import SCHEMA_VERSION
from connector.dataset.storage import local_root
from connector.dataset.writer import SnapshotWriter, recover_staging
from connector.errors import (
    AuthenticationError,
    ExitCode,
    IncompatibleAPIError,
    OutputError,
    SkippedError,
    TargetError,
)
from connector.extraction.guards import check_snapshot_date, describe_missing, missing_targets
from connector.extraction.interrupt import Interrupt, signal_name
from connector.extraction.plan import TargetPlan, plan_targets
from connector.extraction.progress import RejectedOrgs, RunProgress
from connector.extraction.records import run_settings, write_run_record
from connector.extraction.sharding import Shard, select
from connector.extraction.summary import RunSummary
from connector.extraction.target import DroppedVersion, fetch_target
from connector.extraction.workers import WorkerPool
from connector.http.client import RegistryClient
from connector.redaction import redact

log = logging.getLogger(__name__)

UPGRADE_HINT = "upgrade the connector: pip install --upgrade model-versions-connector"


@dataclass
class _TargetOutcome:
    org: str
    model: str
    rows: list[Row] = field(default_factory=list)
    dropped: list[DroppedVersion] = field(default_factory=list)
    error: TargetError | None = None
    elapsed: float = 0.0


class _Run:
    """The mutable state of one run; `extract()` is the only public way in."""

    def __init__(self, config: Config, client: RegistryClient, cancelled: threading.Event) -> None:
        self.client = client
        self.cancelled = cancelled
        self.incompatible: IncompatibleAPIError | None = None
        self.tokens = {org.name: config.token_for(org.name) for org in config.orgs}
        self.version_detail = config.registry.version_detail
        self.concurrency = config.registry.concurrency
        self.secrets = config.secrets()

    def fetch(self, target: tuple[str, str]) -> _TargetOutcome:
        """Runs in a worker thread: fetch and flatten one target. Never raises: whatever goes
        wrong with one target, even a bug, fails that target and not the run."""
        org, model = target
        outcome = _TargetOutcome(org, model)
        started = time.monotonic()
        try:
            if self.cancelled.is_set():
                raise SkippedError("not attempted: the run was aborted", attempts=0)
            fetched = fetch_target(self.client, org, model, self.tokens[org], self.version_detail)
            outcome.rows, outcome.dropped = fetched.rows, fetched.dropped
        except IncompatibleAPIError as exc:
            self.incompatible = self.incompatible or exc
            self.cancelled.set()
            outcome.error = exc
        except TargetError as exc:
            outcome.error = exc
        except Exception as exc:  # a bug: keep the run going, say so loudly
            log.exception("unexpected error on %s/%s", org, model, extra={"event": "bug"})
            outcome.error = TargetError(
                f"unexpected {type(exc).__name__}: {exc} (a bug; please report it)",
                error_type="internal_error",
            )
        if outcome.error is not None:
            outcome.error.org, outcome.error.model = org, model
        outcome.elapsed = time.monotonic() - started
        return outcome


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
    root = local_root(uri)
    run_id = uuid.uuid4().hex
    summary = RunSummary(
        run_id=run_id,
        snapshot_date=day.isoformat(),
        output_uri=str(uri),
        started_at=observed_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        backdated=backdated,
        warnings=list(config.warnings),
    )
    ratio = config.output.min_success_ratio if min_success_ratio is None else min_success_ratio
    settings = run_settings(
        config,
        output=str(uri),
        date=date.isoformat() if date else None,
        min_success_ratio=ratio,
        allow_backdate=allow_backdate,
        replace=replace,
    )
    own_interrupt = interrupt is None
    interrupt = interrupt or Interrupt()
    with RunLock(root, run_id):
        for action in recover_staging(root):
            log.warning("%s", action, extra={"event": "staging_recovered"})
        try:
            if replace or not _refused_as_half_config(config, summary, root, day):
                _run_and_publish(config, summary, root, day, ratio, progress, interrupt)
        except OutputError as exc:
            summary.exit_code = ExitCode.OUTPUT
            summary.message = str(exc)
            log.error("output failure: %s", exc, extra={"event": "output_failed"})
        except BaseException as exc:  # KeyboardInterrupt, an orchestrator's timeout, a bug
            _stopped_by_exception(summary, exc)
            raise
        finally:
            if own_interrupt:
                interrupt.close()
            summary.finished_at = summary.finished_at or _now()
            summary.elapsed_seconds = round(time.monotonic() - started, 3)
            write_run_record(
                root,
                summary,
                settings,
                keep=config.output.keep_run_records,
                secrets=config.secrets(),
            )
    return summary


def _stopped_by_exception(summary: RunSummary, exc: BaseException) -> None:
    """The record of a run an exception ended: a bug, or a stop from outside
    (KeyboardInterrupt, an orchestrator's timeout raised in this thread)."""
    if isinstance(exc, Exception):
        summary.exit_code = ExitCode.INTERNAL
        summary.message = f"unexpected {type(exc).__name__} (a bug; please report it)"
        return
    summary.exit_code = ExitCode.INTERRUPTED
    summary.message = (
        f"stopped by {type(exc).__name__}: nothing was published; earlier snapshots are unchanged"
    )
    log.error("%s", summary.message, extra={"event": "interrupted", "run_id": summary.run_id})


def _refused_as_half_config(config: Config, summary: RunSummary, root: Path, day: date) -> bool:
    """The half-config guard: True (and the summary says why) when the published partition of
    `day` holds a model this run does not target, so publishing would lose it."""
    missing = missing_targets(published_targets(root, day), config.targets(), config.covers)
    if not missing:
        return False
    summary.exit_code = ExitCode.NOT_PUBLISHED
    summary.missing_targets = [f"{org}/{model}" for org, model in missing]
    summary.message = describe_missing(missing, day)
    log.error("%s", summary.message, extra={"event": "not_published", "run_id": summary.run_id})
    return True


def _run_and_publish(
    config: Config,
    summary: RunSummary,
    root: Path,
    day: date,
    ratio: float,
    progress: bool | None,
    interrupt: Interrupt,
) -> None:
    writer = SnapshotWriter(root, day, summary.run_id, batch_rows=config.output.batch_rows)
    try:
        _fetch_all(config, summary, writer, root, day, progress, interrupt=interrupt)
        _finish(config, summary, writer, ratio, interrupt)
    finally:
        if not summary.published:
            writer.discard()


def _fetch_all(
    config: Config,
    summary: RunSummary,
    writer: SnapshotWriter,
    root: Path,
    day: date,
    progress: bool | None,
    *,
    shard: Shard | None = None,
    tick: Callable[[], None] | None = None,
    interrupt: Interrupt | None = None,
) -> list[tuple[str, str]]:
    """Fetch every target (of the shard, if any) into the writer; returns the targets.

    A stop requested through `interrupt` cuts the requests in flight and starts no new one; the
    summary then says `interrupted`."""
    own_interrupt = interrupt is None
    interrupt = interrupt or Interrupt()
    try:
        return _fetch_targets(config, summary, writer, root, day, progress, shard, tick, interrupt)
    finally:
        if own_interrupt:
            interrupt.close()


def _fetch_targets(
    config: Config,
    summary: RunSummary,
    writer: SnapshotWriter,
    root: Path,
    day: date,
    progress: bool | None,
    shard: Shard | None,
    tick: Callable[[], None] | None,
    interrupt: Interrupt,
) -> list[tuple[str, str]]:
    """Resolve the targets (discovery included) and fetch those of the shard (all, if none)."""
    secrets = config.secrets()
    show_progress = sys.stderr.isatty() if progress is None else progress
    # Set on a 426, or when the run stops early: no new requests, no more retries.
    cancelled = threading.Event()
    plan, targets = TargetPlan(), []
    with (
        RegistryClient(config.registry, secrets=secrets, cancelled=cancelled) as client,
        interrupt.watch(lambda: _stop(client, interrupt)),
    ):
        run = _Run(config, client, cancelled)
        rejected = RejectedOrgs(client.blocked)
        try:
            plan = plan_targets(config, client)
            targets = select(plan.targets, shard)
            _record_plan(summary, writer, plan, root, day, secrets)
            summary.targets_attempted += len(targets)
            log.info(
                "extracting %d target(s) into %s",
                len(targets),
                summary.output_uri,
                extra={"event": "run_started", "run_id": summary.run_id},
            )
            with RunProgress(len(targets), enabled=show_progress) as bar:

                def advance(ok: bool) -> None:
                    bar.advance(ok=ok)
                    if tick is not None:
                        tick()

                _fetch_pool(summary, writer, root, day, run, targets, advance, interrupt, rejected)
        finally:
            rejected.log(secrets)
            # also when the writer fails mid-run: the summary must not under-report
            summary.requests = dict(client.requests_by_status)
            summary.requests_by_operation = dict(client.requests_by_operation)
            summary.targets_failed = summary.targets_attempted - summary.targets_succeeded
            summary.failures.sort(key=lambda failure: (failure["org"], failure["model"]))
            summary.dropped_versions.sort(key=lambda d: (d["org"], d["model"], d["version"]))
    incompatible = plan.incompatible or run.incompatible
    if interrupt.requested:
        _interrupted(summary, interrupt)
    elif incompatible is not None:
        summary.exit_code = ExitCode.INCOMPATIBLE_API
        summary.message = (
            f"the registry no longer accepts this connector version ({__version__}): "
            f"HTTP 426 {redact(incompatible.detail, secrets)}; {UPGRADE_HINT}"
        )
    return targets


def _record_plan(
    summary: RunSummary,
    writer: SnapshotWriter,
    plan: TargetPlan,
    root: Path,
    day: date,
    secrets: list[str],
) -> None:
    """Discovery's failures count as failed targets (one per org, against the publish guard)
    and its warnings (a pattern matching nothing, an unusable listed name) are kept."""
    for warning in plan.warnings:
        summary.warnings.append(warning)
        log.warning("%s", warning, extra={"event": "discovery_warning"})
    summary.discovery_failed_orgs = plan.failed_orgs
    summary.targets_attempted += len(plan.failures)
    for error in plan.failures:
        outcome = _TargetOutcome(error.org or "", error.model or "", error=error)
        _record(summary, writer, outcome, root, day, secrets)


def _fetch_pool(
    summary: RunSummary,
    writer: SnapshotWriter,
    root: Path,
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
        quiet = outcome.error is not None and rejected.absorb(outcome.error)
        _record(summary, writer, outcome, root, day, secrets, quiet=quiet)
        advance(outcome.error is None)
        if run.cancelled.is_set() or interrupt.requested:
            workers.stop()
    why = "interrupted" if interrupt.requested else "aborted"
    for org, model in workers.unstarted():  # left over when a 426 or a signal stopped it
        skipped = SkippedError(f"not attempted: the run was {why}", attempts=0)
        skipped.org, skipped.model = org, model
        _record(summary, writer, _TargetOutcome(org, model, error=skipped), root, day, secrets)


def _stop(client: RegistryClient, interrupt: Interrupt) -> None:
    """Runs in the interrupt's watcher thread as soon as a stop is requested."""
    log.warning(
        "%s received: stopping (requests in flight abandoned, nothing published); "
        "send it again to exit at once",
        signal_name(interrupt.signum),
        extra={"event": "interrupted"},
    )
    client.abort()


def _interrupted(summary: RunSummary, interrupt: Interrupt) -> None:
    terminated = interrupt.signum == signal.SIGTERM
    summary.exit_code = ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED
    summary.message = (
        f"stopped by {signal_name(interrupt.signum)}: nothing was published; earlier snapshots "
        "are unchanged"
    )


def _record(
    summary: RunSummary,
    writer: SnapshotWriter,
    outcome: _TargetOutcome,
    root: Path,
    day: date,
    secrets: list[str],
    *,
    quiet: bool = False,
) -> None:
    """Add a finished target to the snapshot or the failures; `quiet` failures (those of an org
    whose token was rejected, told once per org) are logged at DEBUG only."""
    fields = {"org": outcome.org, "model": outcome.model, "elapsed": round(outcome.elapsed, 3)}
    if outcome.error is None:
        writer.add_rows(outcome.rows)
        summary.targets_succeeded += 1
        summary.dropped_versions += [dropped.to_dict() for dropped in outcome.dropped]
        log.debug(
            "%s/%s: %d rows",
            outcome.org,
            outcome.model,
            len(outcome.rows),
            extra={"event": "target_done", **fields},
        )
        return
    error = outcome.error
    # Servers echo headers back in error pages: scrub every message once, here, before it is
    # logged, summarised or written to the manifest.
    error.detail = redact(error.detail, secrets)
    summary.failures.append(error.to_failure())
    if isinstance(error, AuthenticationError) and error.org not in summary.auth_failed_orgs:
        summary.auth_failed_orgs.append(error.org or "")
    log.log(
        logging.DEBUG if quiet else logging.ERROR,
        "%s",
        error,
        extra={
            "event": "target_failed",
            "status": error.status,
            "attempt": error.attempts,
            **fields,
        },
    )
    if error.raw is not None:
        try:
            save_rejected(root, day, error, error.raw, secrets)
            summary.rejected_dir = str(root / REJECTED_DIR / day.isoformat())
        except (OSError, OutputError) as exc:  # keeping evidence must never cost the run
            log.warning(
                "could not keep the rejected payload of %s/%s: %s",
                outcome.org,
                outcome.model,
                exc,
                extra={"event": "rejected_not_saved", **fields},
            )


def _finish(
    config: Config,
    summary: RunSummary,
    writer: SnapshotWriter,
    ratio: float,
    interrupt: Interrupt | None = None,
) -> None:
    """Apply the publish guard, publish, and set the exit code.

    Exit code precedence, most actionable first: interrupted, incompatible API, rejected token,
    publish guard, partial failure. A stop requested once the publish has begun lets it finish
    (it is one atomic swap): the outcome is then the published one.
    """
    if interrupt is not None and interrupt.requested:
        _interrupted(summary, interrupt)
    if summary.exit_code in (
        ExitCode.INCOMPATIBLE_API,
        ExitCode.INTERRUPTED,
        ExitCode.TERMINATED,
    ):
        return
    auth_failed = bool(summary.auth_failed_orgs)
    if summary.discovery_failed_orgs and ratio > 0:
        summary.exit_code = ExitCode.AUTH if auth_failed else ExitCode.NOT_PUBLISHED
        summary.message = (
            f"discovery failed for org(s) {', '.join(summary.discovery_failed_orgs)}: how many "
            "models they have is unknown, so publishing could silently shrink the snapshot; "
            "nothing was published so the previous snapshot stays as it was "
            "(min_success_ratio 0 publishes anyway)"
        )
        return
    if summary.success_ratio < ratio:
        summary.exit_code = ExitCode.AUTH if auth_failed else ExitCode.NOT_PUBLISHED
        summary.message = (
            f"only {summary.targets_succeeded} of {summary.targets_attempted} targets succeeded "
            f"({summary.success_ratio:.0%} < min_success_ratio {ratio:.0%}); nothing was published "
            "so the previous snapshot stays as it was"
        )
        return
    summary.finished_at = _now()
    manifest = {
        "run_id": summary.run_id,
        "connector_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "snapshot_date": summary.snapshot_date,
        "started_at": summary.started_at,
        "finished_at": summary.finished_at,
        # counts observed on another day than the one they are filed under (--allow-backdate)
        "backdated": summary.backdated,
        "observed_at": summary.started_at,
        "registry": config.registry.base_url,
        "targets": {
            "attempted": summary.targets_attempted,
            "succeeded": summary.targets_succeeded,
            "failed": summary.targets_failed,
        },
        "requests": summary.requests,
        "requests_by_operation": summary.requests_by_operation,
        "min_success_ratio": ratio,
        "failures": summary.failures,
        "dropped_versions": summary.dropped_versions,
        "discovery_failed_orgs": summary.discovery_failed_orgs,
        "warnings": summary.warnings,
    }
    if summary.shards:
        manifest["shards"] = summary.shards
    result = writer.publish(manifest)
    summary.published = True
    summary.partition = str(result.partition)
    summary.files = result.files
    summary.rows = result.rows
    if auth_failed:
        summary.exit_code = ExitCode.AUTH
    elif summary.failures:
        summary.exit_code = ExitCode.PARTIAL
    log.info(
        "published %d rows to %s",
        summary.rows,
        summary.partition,
        extra={"event": "published", "run_id": summary.run_id},
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _now() -> str:
    return _utc_now().isoformat(timespec="milliseconds")
