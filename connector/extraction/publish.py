"""`publish`: merge the N staged shards of a date into one snapshot, or refuse and change nothing.

The staged parts must make exactly one snapshot: every shard 1..N present, each staged for
this date and this configuration (its fingerprint), no run staged twice, and every target in
the one shard its hash names. Then the publish guard applies to all shards together, their
failures go into one manifest, and the partition is published the same way a one-process run
publishes it (dataset/writer.py locally, dataset/objectstore.py on object storage), so readers
see the old snapshot or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connector.config import Config, validate_output
from connector.dataset import shards as staging
from connector.dataset.lock import open_run_lock
from connector.dataset.published import published_targets
from connector.dataset.storage import STORAGE_ERRORS, Location, locate_output
from connector.dataset.writer import PublishResult, SnapshotWriter, open_snapshot_writer, recover
from connector.errors import ConfigError, OutputError, ShardsError, TargetFailure
from connector.extraction.guards import describe_missing, missing_targets
from connector.extraction.outcome import (
    Ending,
    RunInfo,
    Tally,
    now,
    publish_if_allowed,
    summarize,
)
from connector.extraction.records import run_settings, write_run_record
from connector.extraction.sharding import MAX_SHARDS, fingerprint, shard_of
from connector.extraction.summary import RunSummary

log = logging.getLogger(__name__)

_MAX_TARGET_PROBLEMS = 5


def publish(
    config: Config,
    date: date,
    shards: int,
    output: str | None = None,
    *,
    min_success_ratio: float | None = None,
    replace: bool = False,
) -> RunSummary:
    """Publish the snapshot of `date` from its `shards` staged parts.

    The guards of a one-process run apply to all parts together: `min_success_ratio`, and,
    unless `replace`, the half-config guard (the parts must target every model the date's
    published partition holds). The publish writes its run record under `_runs/`.

    Raises ShardsError (nothing published) when the parts do not make one snapshot,
    LockHeldError when another run holds the output or one of the shards, OutputError when the
    output cannot be used; the guard's verdict and the publish itself are in the summary.
    """
    if not 1 <= shards <= MAX_SHARDS:
        raise ConfigError([f"--shards must be 1 to {MAX_SHARDS}, got {shards}"])
    uri = validate_output({"uri": output}).uri if output else config.output.uri
    location = locate_output(uri, config.output.storage_mapping())
    run_id = uuid.uuid4().hex
    with open_run_lock(location, run_id) as lock:
        for action in recover(location):
            log.warning("%s", action, extra={"event": "staging_recovered"})
        return publish_locked(
            config,
            date,
            shards,
            location,
            run_id,
            min_success_ratio,
            replace=replace,
            check_lock=lock.check,
        )


def publish_locked(
    config: Config,
    day: date,
    count: int,
    location: Location,
    run_id: str,
    min_success_ratio: float | None,
    started: float | None = None,
    *,
    replace: bool = False,
    check_lock: Callable[[], None] = lambda: None,
) -> RunSummary:
    """`publish` for a caller that already holds the output lock (`--processes`); `check_lock`
    raises OutputError if that lock was lost (a lease on object storage)."""
    started = time.monotonic() if started is None else started
    uri = location.uri
    ratio = config.output.min_success_ratio if min_success_ratio is None else min_success_ratio
    finished_at: str | None = None
    published: PublishResult | None = None
    output_error: OutputError | None = None
    missing: list[tuple[str, str]] = []
    with contextlib.ExitStack() as locks:
        held = [
            locks.enter_context(staging.shard_lock(location, day, index, count, run_id))
            for index in range(1, count + 1)
        ]

        def check_locks() -> None:  # before the publish: every lease must still be held
            check_lock()
            for shard_lock in held:
                shard_lock.check()

        parts = check_parts(location, day, count, fingerprint(config, uri))
        info, tally = merge(parts, run_id, uri, day, now(), ratio, list(config.warnings))
        try:
            if not replace:  # the half-config guard over all parts
                targets = [
                    (org, model) for part in parts for org, model in part.record.get("targets", [])
                ]
                missing = missing_targets(published_targets(location, day), targets, config.covers)
            if missing:
                log.error(
                    "%s",
                    describe_missing(missing, day),
                    extra={"event": "not_published", "run_id": run_id},
                )
            else:
                finished_at, published = _merge_and_publish(
                    config, info, tally, parts, location, check_locks
                )
        except OutputError as exc:
            output_error = exc
            log.error("output failure: %s", exc, extra={"event": "output_failed"})
        if published is not None:
            staging.remove_parts(location, day, count)
    ending = Ending(
        finished_at=finished_at or now(),
        elapsed=time.monotonic() - started,
        published=published,
        output_error=output_error,
        missing=missing,
    )
    summary = summarize(info, tally, ending)
    settings = run_settings(
        config,
        output=uri,
        date=day.isoformat(),
        shards=count,
        min_success_ratio=ratio,
        replace=replace,
    )
    record = write_run_record(
        location, summary, settings, keep=config.output.keep_run_records, secrets=config.secrets()
    )
    return dataclasses.replace(summary, record=str(record)) if record is not None else summary


def _merge_and_publish(
    config: Config,
    info: RunInfo,
    tally: Tally,
    parts: list[staging.StagedPart],
    location: Location,
    check_locks: Callable[[], None],
) -> tuple[str | None, PublishResult | None]:
    writer = open_snapshot_writer(
        location, info.day, info.run_id, batch_rows=config.output.batch_rows
    )
    published: PublishResult | None = None
    try:
        for part in parts:
            _copy_rows(part, writer, config.output.batch_rows)
        check_locks()  # on object storage a lease can be lost: never publish over a newer holder
        finished_at, published = publish_if_allowed(config, info, tally, writer)
        return finished_at, published
    finally:
        if published is None:
            writer.discard()


def _copy_rows(part: staging.StagedPart, writer: SnapshotWriter, batch_rows: int) -> None:
    """Stream a part's rows into the snapshot in row-group-sized batches (flat memory)."""
    filesystem = part.location.filesystem
    for path in part.files:
        try:
            with filesystem.open_input_file(path) as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows):
                    writer.add_table(pa.Table.from_batches([batch]))
        except STORAGE_ERRORS as exc:
            shown = part.location.display(path)
            raise OutputError(f"cannot read staged shard file {shown}: {exc}") from exc


def check_parts(root: Location, day: date, count: int, digest: str) -> list[staging.StagedPart]:
    """Every part 1..count of `day`, checked; ShardsError listing every problem found."""
    problems: list[str] = []
    parts: list[staging.StagedPart] = []
    for index in range(1, count + 1):
        part = staging.read_part(root, day, index, count)
        if part is None:
            problems.append(
                f"shard {index}/{count} is missing: nothing is staged in "
                f"{root.display(staging.part_path(root, day, index, count))}"
            )
            continue
        problems += _stale(part, day, digest)
        parts.append(part)
    problems += _duplicated(parts)
    if problems:
        others = [n for n in staging.staged_counts(root, day) if not n.endswith(f"-of-{count}")]
        hint = f"; also staged for this date: {', '.join(others)}" if others else ""
        raise ShardsError(
            f"cannot publish {day.isoformat()} from {count} shard(s), nothing was published"
            f"{hint}:\n" + "\n".join(f"  {problem}" for problem in problems)
        )
    return parts


def _stale(part: staging.StagedPart, day: date, digest: str) -> list[str]:
    """A part staged for another date or configuration, or damaged since."""
    name = f"shard {part.index}/{part.count}"
    record = part.record
    problems = []
    if record.get("snapshot_date") != day.isoformat():
        problems.append(f"{name} is stale: staged for {record.get('snapshot_date')}, not {day}")
    if record.get("shard") != [part.index, part.count]:
        problems.append(
            f"{name} is duplicated: its record says shard {record.get('shard')} (a copied part)"
        )
    if record.get("fingerprint") != digest:
        problems.append(
            f"{name} is stale: staged with another configuration (fingerprint "
            f"{record.get('fingerprint')}, this one {digest}); re-run it with this config"
        )
    missing = part.missing_files()
    if missing or not part.files:
        problems.append(f"{name} is damaged: files missing in {part.shown}: {missing}")
    return problems


def _duplicated(parts: list[staging.StagedPart]) -> list[str]:
    """The same run staged as two shards, or a target in a shard its hash does not name."""
    problems: list[str] = []
    runs: dict[str, int] = {}
    owner: dict[tuple[str, str], int] = {}
    for part in parts:
        run = str(part.record.get("run_id"))
        if run in runs:
            problems.append(
                f"shard {part.index}/{part.count} is duplicated: the same run ({run}) as "
                f"shard {runs[run]}/{part.count}"
            )
        runs.setdefault(run, part.index)
        for org, model in part.record.get("targets", []):
            home = shard_of(org, model, part.count)
            if home != part.index or (org, model) in owner:
                problems.append(
                    f"shard {part.index}/{part.count} is duplicated: it holds {org}/{model}, "
                    f"which belongs to shard {home}/{part.count}"
                )
            owner.setdefault((org, model), part.index)
    if len(problems) > _MAX_TARGET_PROBLEMS:
        hidden = len(problems) - _MAX_TARGET_PROBLEMS
        problems = [*problems[:_MAX_TARGET_PROBLEMS], f"... and {hidden} more"]
    return problems


def merge(
    parts: list[staging.StagedPart],
    run_id: str,
    uri: str,
    day: date,
    now: str,
    min_success_ratio: float = 0.0,
    warnings: list[str] | None = None,
) -> tuple[RunInfo, Tally]:
    """One run for all parts: targets, requests and failures added up."""
    tally = Tally()
    failures: dict[tuple[str, str], dict[str, Any]] = {}
    for part in parts:
        record: dict[str, Any] = part.record
        tally.attempted += len(record.get("targets", []))
        tally.succeeded += int(record.get("targets_succeeded", 0))
        # Every shard lists the org itself, so a failed listing is reported by each: once here.
        for failure in record.get("failures", []):
            failures.setdefault((failure["org"], failure["model"]), failure)
        for org in record.get("discovery_failed_orgs", []):
            if org not in tally.discovery_failed_orgs:
                tally.discovery_failed_orgs.append(org)
        tally.dropped += record.get("dropped_versions", [])
        for org in record.get("auth_failed_orgs", []):
            tally.block(org)
        _add_counts(tally.requests, record.get("requests", {}))
        _add_counts(tally.requests_by_operation, record.get("requests_by_operation", {}))
        tally.rejected_dir = tally.rejected_dir or record.get("rejected_dir")
    tally.failures = [TargetFailure.from_dict(failure) for failure in failures.values()]
    targeted = {tuple(t) for part in parts for t in part.record.get("targets", [])}
    tally.attempted += sum(1 for key in failures if key not in targeted)  # failed listings
    info = RunInfo(
        run_id=run_id,
        day=day,
        uri=uri,
        started_at=min((str(p.record.get("started_at")) for p in parts), default=now),
        min_success_ratio=min_success_ratio,
        backdated=any(bool(p.record.get("backdated")) for p in parts),
        warnings=list(warnings or []),
        shards=len(parts),
    )
    return info, tally


def _add_counts(total: dict[str, int], more: dict[str, Any]) -> None:
    for key, number in more.items():
        total[key] = total.get(key, 0) + int(number)
