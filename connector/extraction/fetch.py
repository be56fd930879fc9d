"""Fetch the targets of one part into its data files, counting what happens in a `Tally`.

Memory stays flat however many models there are: at most `concurrency` targets are in flight
and `2 x concurrency` finished ones wait for the writer, which flushes rows in bounded batches.
A target's failure, even a bug, fails that target and not the run. A stop request cuts the
requests in flight and starts no new one; the targets it left are counted as not attempted,
in one log line, not one per target.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from connector.config import Config
from connector.dataset.datafile import DataFileWriter
from connector.dataset.flatten import Row
from connector.dataset.rejected import rejected_dir, save_rejected
from connector.dataset.store import OUTPUT_ERRORS
from connector.errors import (
    ErrorType,
    OrgBlockedError,
    PayloadError,
    RunAbortedError,
    SkippedError,
    TargetError,
    TargetFailedError,
    TargetFailure,
)
from connector.extraction.context import RunContext
from connector.extraction.interrupt import REPEAT_WINDOW_SECONDS, Interrupt, signal_name
from connector.extraction.outcome import Tally
from connector.extraction.plan import TargetPlan, plan_targets
from connector.extraction.progress import RejectedOrgs, RunProgress
from connector.extraction.sharding import Shard, select
from connector.extraction.target import DroppedVersion, fetch_target
from connector.extraction.workers import WorkerPool
from connector.http.budget import Share
from connector.http.client import RegistryClient
from connector.loggers import get_logger

log = get_logger("connector.extraction.run")

Target = tuple[str, str]


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


def _failed_outcome(
    org: str, model: str, elapsed: float, error: TargetError, secrets: tuple[str, ...]
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


class _Fetcher:
    """The fetch side of one part, shared by the worker threads."""

    def __init__(
        self, context: RunContext, config: Config, client: RegistryClient, interrupt: Interrupt
    ) -> None:
        self.context = context
        self.client = client
        self.interrupt = interrupt
        self.cancelled = threading.Event()  # a 426, or a stop: no new requests, no retries
        self.credentials = {org.name: config.credential_for(org.name) for org in config.orgs}
        self.version_detail = config.registry.version_detail
        self.concurrency = config.registry.concurrency

    def why_not_attempted(self) -> str:
        return "the run was interrupted" if self.interrupt.requested else "the run was aborted"

    def fetch(self, target: Target) -> _TargetOutcome:
        """Runs in a worker thread: fetch and flatten one target. Never raises."""
        org, model = target
        started = time.monotonic()
        try:
            if self.cancelled.is_set() or self.interrupt.requested:
                raise SkippedError(
                    f"not attempted: {self.why_not_attempted()}", org=org, model=model, attempts=0
                )
            fetched = fetch_target(
                self.client, org, model, self.credentials[org], self.version_detail
            )
        except TargetError as exc:
            if isinstance(exc, RunAbortedError):
                self.cancelled.set()
            return _failed_outcome(
                org, model, time.monotonic() - started, exc, self.context.secrets
            )
        except Exception as exc:  # a bug: keep the run going, say so loudly
            log.exception("unexpected error on %s/%s", org, model, extra={"event": "bug"})
            bug = TargetFailedError(
                f"unexpected {type(exc).__name__}: {exc} (a bug; please report it)",
                org=org,
                model=model,
                error_type=ErrorType.INTERNAL_ERROR,
            )
            return _failed_outcome(
                org, model, time.monotonic() - started, bug, self.context.secrets
            )
        return _TargetOutcome(
            org,
            model,
            time.monotonic() - started,
            rows=fetched.rows,
            dropped=fetched.dropped,
            warnings=fetched.warnings,
            share=fetched.share,
        )


def fetch_part(
    context: RunContext,
    config: Config,
    shard: Shard,
    writer: DataFileWriter,
    tally: Tally,
    *,
    interrupt: Interrupt,
    progress: bool | None = None,
    tick: Callable[[bool], None] | None = None,
) -> list[Target]:
    """Resolve the targets (discovery included) and fetch those of `shard` into `writer`;
    returns the shard's targets."""
    show_progress = sys.stderr.isatty() if progress is None else progress
    targets: list[Target] = []
    with RegistryClient(config.registry, secrets=list(context.secrets)) as client:
        fetcher = _Fetcher(context, config, client, interrupt)
        rejected = RejectedOrgs(client.blocked)
        with interrupt.watch(lambda: _stop(client, interrupt)):
            try:
                plan = plan_targets(config, client)
                targets = select(plan.targets, shard)
                _record_plan(context, tally, plan)
                tally.attempted += len(targets)
                log.info(
                    "extracting %d target(s) into %s",
                    len(targets),
                    context.store.uri,
                    extra={"event": "run_started", "run_id": context.run_id},
                )
                with RunProgress(len(targets), enabled=show_progress) as bar:

                    def advance(ok: bool) -> None:
                        bar.advance(ok=ok)
                        if tick is not None:
                            tick(ok)

                    _fetch_pool(context, tally, writer, fetcher, targets, advance, rejected)
            finally:  # also when the writer fails mid-run: the summary must not under-report
                rejected.log(list(context.secrets))
                tally.requests = dict(client.requests_by_status)
                tally.requests_by_operation = dict(client.requests_by_operation)
    return targets


def _record_plan(context: RunContext, tally: Tally, plan: TargetPlan) -> None:
    """Discovery's failures count as failed targets (one per org, against the publish guard)
    and its warnings (a pattern matching nothing, an unusable listed name) are kept."""
    for warning in plan.warnings:
        tally.warn(warning)
        log.warning("%s", warning, extra={"event": "discovery_warning"})
    tally.discovery_failed_orgs = plan.failed_orgs
    tally.attempted += len(plan.failures)
    for error in plan.failures:
        outcome = _failed_outcome(error.org or "", error.model or "", 0.0, error, context.secrets)
        _record(context, tally, None, outcome)


def _fetch_pool(
    context: RunContext,
    tally: Tally,
    writer: DataFileWriter,
    fetcher: _Fetcher,
    targets: list[Target],
    advance: Callable[[bool], None],
    rejected: RejectedOrgs,
) -> None:
    """Fetch the targets on the worker pool, recording each outcome as it finishes."""
    threads = min(fetcher.concurrency, len(targets))
    workers = WorkerPool(
        fetcher.fetch, targets, threads, name="fetch", abandoned=fetcher.client.abort
    )
    not_attempted = 0
    for outcome in workers:
        failure = outcome.failure
        stopped = fetcher.interrupt.requested or fetcher.cancelled.is_set()
        skipped = failure is not None and failure.error_type is ErrorType.SKIPPED
        quiet = failure is not None and (
            rejected.absorb(failure, outcome.blocks_org) or (skipped and stopped)
        )
        not_attempted += skipped and stopped
        try:
            _record(context, tally, writer, outcome, quiet=quiet)
        finally:
            # The rows are in the writer (as Arrow): free the Python rows, then their budget.
            outcome.rows.clear()
            if outcome.share is not None:
                outcome.share.release()
        advance(failure is None)
        if fetcher.cancelled.is_set() or fetcher.interrupt.requested:
            workers.stop()
    left = workers.unstarted()  # left over when a 426 or a stop ended the pool early
    for org, model in left:
        skipped_error = SkippedError(
            f"not attempted: {fetcher.why_not_attempted()}", org=org, model=model, attempts=0
        )
        outcome = _TargetOutcome(org, model, 0.0, failure=skipped_error.failure(context.secrets))
        _record(context, tally, writer, outcome, quiet=True)
    not_attempted += len(left)
    if not_attempted:
        log.error(
            "%s: %d target(s) did not run (not attempted, or cut in flight)",
            fetcher.why_not_attempted(),
            not_attempted,
            extra={"event": "not_attempted", "run_id": context.run_id},
        )


def _stop(client: RegistryClient, interrupt: Interrupt) -> None:
    """Runs in the interrupt's watcher thread as soon as a stop is requested."""
    log.warning(
        "%s received: stopping (requests in flight abandoned, nothing published); to exit at "
        "once, send another signal, or the same one again after %g s",
        signal_name(interrupt.signum),
        REPEAT_WINDOW_SECONDS,
        extra={"event": "interrupted"},
    )
    client.abort()


def _record(
    context: RunContext,
    tally: Tally,
    writer: DataFileWriter | None,
    outcome: _TargetOutcome,
    *,
    quiet: bool = False,
) -> None:
    """Add a finished target to the part or the failures; `quiet` failures (those of an org
    whose token was rejected, told once per org; targets a stop left) are logged at DEBUG."""
    fields = {"org": outcome.org, "model": outcome.model, "elapsed": round(outcome.elapsed, 3)}
    failure = outcome.failure
    if failure is None:
        assert writer is not None
        writer.add_rows(outcome.rows)
        tally.succeeded += 1
        for dropped in outcome.dropped:
            tally.dropped.add(dropped.to_dict())
        for warning in outcome.warnings:
            tally.warn(warning)
        log.debug(
            "%s/%s: %d rows",
            outcome.org,
            outcome.model,
            len(outcome.rows),
            extra={"event": "target_done", **fields},
        )
        return
    tally.failures.add(failure)
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
        _keep_rejected(context, tally, failure, outcome.rejected_body, outcome.rejected_request)


def _keep_rejected(
    context: RunContext,
    tally: Tally,
    failure: TargetFailure,
    body: bytes,
    request: str | None,
) -> None:
    store = context.store
    try:
        save_rejected(store, context.day, failure, body, list(context.secrets), request)
        tally.rejected_dir = store.display(rejected_dir(context.day))
    except OUTPUT_ERRORS as exc:  # keeping evidence must never cost the run
        log.warning(
            "could not keep the rejected payload of %s/%s: %s",
            failure.org,
            failure.model,
            exc,
            extra={"event": "rejected_not_saved", "org": failure.org, "model": failure.model},
        )
