"""Publish a snapshot from its staged parts, or refuse and change nothing.

The last steps of every run (one process, `--processes P`, or `connector publish --shards N`
after N part runs): the parts must make exactly one snapshot (every part 1..N present, each staged
for this date and this configuration, no run staged twice, every target in the one part its hash
names); the publish guard applies to all parts together; their rows are merged into the day's
one data file, whose footer carries the manifest; then the partition is replaced atomically
(`connector.dataset.partition`), so readers see the old snapshot or the new one, never a mix.
Before that, the staged rows are checked against the last published day before this one
(`connector.checks`): a check that fails holds the day, which is then moved to `_held/`
(`connector.dataset.held`) instead of published, to be accepted or discarded by a person.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq

from connector.checks.measure import check_day
from connector.checks.verdicts import DayChecks
from connector.config import Config
from connector.dataset import partition, shards
from connector.dataset.held import held_days, hold_day
from connector.dataset.layout import DATA_NAME, LOCK_NAME
from connector.dataset.partition import PublishResult
from connector.dataset.published import published_targets
from connector.dataset.store import STORAGE_ERRORS
from connector.dates import as_day
from connector.errors import ConfigError, OutputError, ShardsError
from connector.extraction import lineage
from connector.extraction.context import RunContext
from connector.extraction.guards import describe_missing, missing_targets
from connector.extraction.outcome import Ending, Tally, merge, now, summarize
from connector.extraction.records import recorded, run_settings
from connector.extraction.sharding import MAX_SHARDS, shard_of
from connector.extraction.stage import Part, read_part
from connector.extraction.summary import RunSummary, build_manifest
from connector.loggers import get_logger

log = get_logger(__name__)

_MAX_TARGET_PROBLEMS = 5


def publish(
    config: Config,
    date: date | str,
    shards: int,
    output: str | None = None,
    *,
    min_success_ratio: float | None = None,
    replace: bool = False,
    lineage_parent: str | None = None,
) -> RunSummary:
    """Publish the snapshot of `date` (a `date` or `YYYY-MM-DD`) from its `shards` staged parts.

    The guards of a one-process run apply to all parts together: `min_success_ratio`, and,
    unless `replace`, the half-config guard (the parts must target every model the date's
    published partition holds). The publish writes its run record under `_runs/`.

    With OpenLineage configured it sends its START and final events; `lineage_parent` as for
    `extract`.

    Raises ShardsError (nothing published) when the parts do not make one snapshot,
    LockHeldError when another run holds the output or one of the parts, OutputError when the
    output cannot be used; the guard's verdict and the publish itself are in the summary.
    """
    day = as_day(date, "date")
    if not 1 <= shards <= MAX_SHARDS:
        raise ConfigError([f"--shards must be 1 to {MAX_SHARDS}, got {shards}"])
    settings = run_settings(
        config,
        output=output or config.output.uri,
        date=day.isoformat(),
        shards=shards,
        min_success_ratio=min_success_ratio,
        replace=replace,
    )
    context = RunContext.build(
        config,
        day,
        output=output,
        min_success_ratio=min_success_ratio,
        replace=replace,
        settings=settings,
    )
    started = time.monotonic()

    def locked() -> RunSummary:
        with context.store.lock(LOCK_NAME, context.run_id) as lock:
            for action in partition.recover(context.store):
                log.warning("%s", action, extra={"event": "staging_recovered"})
            partition.check_format(context.store, context.table_format)
            summary = publish_parts(
                context, shards, check_lock=lock.check, started=started, merged=shards
            )
            return recorded(context, summary)

    step = lineage.publish_step(context, config.source, shards)
    return lineage.observed(context, step, locked, parent=lineage_parent)


def publish_parts(
    context: RunContext,
    count: int,
    *,
    check_lock: Callable[[], None],
    started: float,
    merged: int | None = None,
) -> RunSummary:
    """Publish the `count` parts of the context's day (the output lock held by the caller;
    `check_lock` raises OutputError if it was lost); `merged` is what the summary says it
    merged (None for a one-process run)."""
    store, day = context.store, context.day
    checked: _Checked | None = None
    output_error: OutputError | None = None
    missing: list[tuple[str, str]] = []
    with contextlib.ExitStack() as locks:
        part_locks = [
            locks.enter_context(shards.shard_lock(store, day, index, count, context.run_id))
            for index in range(1, count + 1)
        ]

        def check_locks() -> None:  # before the publish: every lease must still be held
            check_lock()
            for part_lock in part_locks:
                part_lock.check()

        parts = check_parts(context, count)
        tally = merge(part.summary for part in parts)
        context = context.evolve(
            started_at=min(p.summary.started_at for p in parts),
            backdated=any(p.summary.backdated for p in parts),
        )
        try:
            if not context.replace:  # the half-config guard over all parts
                targets = [target for part in parts for target in part.targets]
                missing = missing_targets(published_targets(store, day), targets, context.covers)
            if missing:
                log.error(
                    "%s",
                    describe_missing(missing, day),
                    extra={"event": "not_published", "run_id": context.run_id},
                )
            elif tally.publish_allowed(context.min_success_ratio):
                checked = _merge_and_publish(context, tally, parts, check_locks, merged)
                output_error = checked.error
        except OutputError as exc:
            output_error = exc
        if output_error is not None:
            log.error("output failure: %s", output_error, extra={"event": "output_failed"})
        if checked is not None and (checked.published or checked.held):
            shards.remove_parts(store, day, count)  # the day is published, or kept in _held/
    checked = checked or _Checked()
    held = checked.held
    if held is not None:
        tally.files = [DATA_NAME]  # the day's one file, kept under _held/
    ending = Ending(
        now(),
        elapsed=time.monotonic() - started,
        published=checked.published,
        output_error=output_error,
        missing=missing,
        shards=merged,
        checks=checked.checks.document() if checked.checks is not None else None,
        held=held,
        message=held_message(context, checked.checks, held) if checked.checks and held else None,
    )
    return summarize(context, tally, ending)


def held_message(context: RunContext, checks: DayChecks, where: str) -> str:
    """Why nothing was published although everything was fetched, and what to do now."""
    day = context.day.isoformat()
    failed = ", ".join(result.describe() for result in checks.failing)
    return (
        f"a check held the snapshot of {day} ({failed}): it is kept in {where} and nothing was "
        "published (earlier snapshots are unchanged); review it, then publish it as observed "
        f"with `connector accept --config CONFIG --date {day} --run {context.run_id}` or drop "
        f"it with `connector discard --config CONFIG --date {day} --run {context.run_id}`; an "
        "automatic retry would observe another moment, not this one"
    )


@dataclass(frozen=True)
class _Checked:
    """A publish after its checks: published, held, or failed (`error`)."""

    checks: DayChecks | None = None
    published: PublishResult | None = None
    held: str | None = None  # where the day is kept
    error: OutputError | None = None


def _merge_and_publish(
    context: RunContext,
    tally: Tally,
    parts: list[Part],
    check_locks: Callable[[], None],
    merged: int | None,
) -> _Checked:
    """Check the staged parts against the previous snapshot, merge their rows into the day's
    data file (its footer holds the manifest, checks included), then the atomic replace of the
    partition, or, when a check fails, the move of the day to `_held/`."""
    store = context.store
    try:
        checks = check_day(
            store,
            context.day,
            [path for part in parts for path in part.staged.files],
            [target for part in parts for target in part.targets],
            context.covers,
            context.checks,
        )
    except OutputError as exc:
        return _Checked(error=exc)
    writer = partition.open_day_writer(store, context.run_id, batch_rows=context.batch_rows)
    published: PublishResult | None = None
    holding = False
    try:
        for part in parts:
            _copy_rows(context, part, writer.add_table)
        draft = summarize(context, tally, Ending(now(), shards=merged, checks=checks.document()))
        manifest = build_manifest(draft, min_success_ratio=context.min_success_ratio)
        writer.close(footer=manifest)
        partition.check_staged(store, context.run_id, writer.rows)
        check_locks()  # on object storage a lease can be lost: never publish over a newer holder
        manifest = {**manifest, "rows": writer.rows}
        if checks.held:
            holding = True  # from here on the staged day is never discarded: it is moved
            where = hold_day(store, context.day, context.run_id, {**manifest, "files": [DATA_NAME]})
            log.error(
                "%s",
                held_message(context, checks, where),
                extra={"event": "held", "run_id": context.run_id},
            )
            return _Checked(checks, held=where)
        published = partition.publish_day(
            store, context.day, context.run_id, manifest, table_format=context.table_format
        )
    except OutputError as exc:
        return _Checked(checks, error=exc)
    finally:
        if published is None and not holding:
            writer.abort()
            partition.discard_staging(store, context.run_id)
    log.info(
        "published %d rows to %s",
        published.rows,
        published.partition,
        extra={"event": "published", "run_id": context.run_id},
    )
    return _Checked(checks, published=published)


def _copy_rows(context: RunContext, part: Part, add: Callable[..., None]) -> None:
    """Stream a part's rows into the day's file in row-group-sized batches (flat memory)."""
    store = context.store
    for path in part.staged.files:
        try:
            with store.filesystem.open_input_file(store.native(path)) as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=context.batch_rows):
                    add(pa.Table.from_batches([batch]))
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot read staged part file {store.display(path)}: {exc}") from exc


def check_parts(context: RunContext, count: int) -> list[Part]:
    """Every part 1..count of the day, checked; ShardsError listing every problem found."""
    problems: list[str] = []
    parts: list[Part] = []
    for index in range(1, count + 1):
        part, found = read_part(context, index, count)
        problems += found
        if part is not None:
            parts.append(part)
    problems += _duplicated(parts)
    if problems:
        day = context.day
        others = [
            n for n in shards.staged_counts(context.store, day) if not n.endswith(f"-of-{count}")
        ]
        hint = f"; also staged for this date: {', '.join(others)}" if others else ""
        if not parts:  # a publish that held the day took its parts along
            held, _ = held_days(context.store, day)
            runs = ", ".join(held_day.run_id for held_day in held)
            hint += (
                f"; the day is held (run {runs}): `connector status` shows why, then "
                "`connector accept` or `connector discard` it"
                if held
                else ""
            )
        raise ShardsError(
            f"cannot publish {day.isoformat()} from {count} shard(s), nothing was published"
            f"{hint}:\n" + "\n".join(f"  {problem}" for problem in problems)
        )
    return parts


def _duplicated(parts: list[Part]) -> list[str]:
    """The same run staged as two parts, or a target in a part its hash does not name."""
    problems: list[str] = []
    runs: dict[str, int] = {}
    owner: dict[tuple[str, str], int] = {}
    for part in parts:
        index, count = part.staged.index, part.staged.count
        run = part.summary.run_id
        if run in runs:
            problems.append(
                f"{part.name} is duplicated: the same run ({run}) as shard {runs[run]}/{count}"
            )
        runs.setdefault(run, index)
        for org, model in part.targets:
            home = shard_of(org, model, count)
            if home != index or (org, model) in owner:
                problems.append(
                    f"{part.name} is duplicated: it holds {org}/{model}, which belongs to "
                    f"shard {home}/{count}"
                )
            owner.setdefault((org, model), index)
    if len(problems) > _MAX_TARGET_PROBLEMS:
        hidden = len(problems) - _MAX_TARGET_PROBLEMS
        problems = [*problems[:_MAX_TARGET_PROBLEMS], f"... and {hidden} more"]
    return problems
