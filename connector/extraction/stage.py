"""Stage one part of a snapshot: fetch its targets and commit them as the part K of N.

Every run stages its rows as parts: a one-process run stages the one part 1 of 1, `--processes
P` stages P parts in P processes, `--shard K/N` stages part K on whatever machine runs it; the
publish then merges the parts (`connector.extraction.publish`). A part run takes only its own
part's lock, so the N parts of a date can run at once on any machines that share the output.

A part's record is its summary (`RunSummary.to_dict`) plus what the publish checks: the date,
the part's place (K of N), the fingerprint of the configuration it was staged with, and its
targets. `read_part` reads it back with the same code, as untrusted input.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector._version import __version__
from connector.config import Config
from connector.dataset import shards
from connector.dataset.schema import SCHEMA_VERSION
from connector.dataset.store import OUTPUT_ERRORS
from connector.errors import OutputError
from connector.extraction.context import RunContext
from connector.extraction.fetch import Target, fetch_part
from connector.extraction.interrupt import Interrupt
from connector.extraction.outcome import Ending, Stop, Tally, now, stopped_by_signal, summarize
from connector.extraction.sharding import Shard
from connector.extraction.summary import RunSummary
from connector.loggers import get_logger

log = get_logger(__name__)

RECORD_FORMAT = 2  # 1: the record of connector versions before parts carried their summary


@dataclass(frozen=True)
class Part:
    """A staged part, its record read back and checked."""

    staged: shards.StagedPart
    summary: RunSummary
    targets: list[Target]

    @property
    def name(self) -> str:
        return f"shard {self.staged.index}/{self.staged.count}"


def stage_part(
    context: RunContext,
    config: Config,
    shard: Shard,
    *,
    interrupt: Interrupt,
    progress: bool | None = None,
    tick: Callable[[bool], None] | None = None,
    own_id: bool = False,
) -> RunSummary:
    """Fetch part K of N and stage it, replacing what an earlier run of that part staged.
    Returns the part's summary (`staged` set when it was staged). The part gets a run id of
    its own, unless `own_id`: a `--shard` run is its own run (its lineage events name it)."""
    started = time.monotonic()
    index, count = shard
    store, day = context.store, context.day
    part = context if own_id else context.evolve(run_id=uuid.uuid4().hex)
    label = f"{index}/{count}"
    tally = Tally()
    output_error: OutputError | None = None
    staged: str | None = None
    stopped: Stop | None = None
    with shards.shard_lock(store, day, index, count, part.run_id) as lock:
        shards.check_part(store, day, index, count)  # refused before anything is fetched
        writer = shards.open_part_writer(
            store, day, index, count, part.run_id, batch_rows=context.batch_rows
        )
        try:
            targets = fetch_part(
                part,
                config,
                shard,
                writer,
                tally,
                interrupt=interrupt,
                progress=progress,
                tick=tick,
            )
            if interrupt.requested:
                stopped = stopped_by_signal(interrupt)  # a stop: the earlier part stays
            elif tally.incompatible is not None:
                # Nothing of this connector version may be published: drop the older part too,
                # so the publish reports the part missing until an upgraded run stages it.
                shards.drop_part(store, day, index, count)
            else:
                files = writer.close()
                tally.rows, tally.files = writer.rows, files
                where = store.display(shards.part_path(day, index, count))
                draft = summarize(part, tally, Ending(now(), shard=label, staged=where))
                lock.check()  # a lost lease: another run of this part may be staging now
                staged = shards.commit(
                    store, day, index, count, files, part_record(draft, context, shard, targets)
                )
        except OUTPUT_ERRORS as exc:
            output_error = exc if isinstance(exc, OutputError) else OutputError(str(exc))
            log.error("output failure: %s", output_error, extra={"event": "output_failed"})
        finally:
            writer.abort()  # what was not committed: this run's own files
    summary = summarize(
        part,
        tally,
        Ending(
            now(),
            elapsed=time.monotonic() - started,
            output_error=output_error,
            staged=staged,
            stopped=stopped,
            shard=label,
        ),
    )
    if summary.staged:
        log.log(
            logging.INFO if count > 1 else logging.DEBUG,
            "staged shard %s: %d rows in %s",
            label,
            summary.rows,
            summary.staged,
            extra={"event": "shard_staged", "run_id": part.run_id},
        )
    return summary


def part_record(
    summary: RunSummary, context: RunContext, shard: Shard, targets: list[Target]
) -> dict[str, Any]:
    """What a part's record holds (no token: see `sharding.fingerprint`)."""
    return {
        **summary.to_dict(),
        "format": RECORD_FORMAT,
        "part": list(shard),
        "fingerprint": context.fingerprint,
        "connector_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "targets": [[org, model] for org, model in targets],
    }


def read_part(context: RunContext, index: int, count: int) -> tuple[Part | None, list[str]]:
    """Part K of N of the context's day, read back and checked, and what is wrong with it (it
    is missing, was staged for another date, count or configuration, or lost files); the part
    is None when it is missing. A record that cannot be read, or a link where the part's
    entries belong, is an OutputError naming it."""
    store, day = context.store, context.day
    name = f"shard {index}/{count}"
    staged = shards.read_part(store, day, index, count)  # an unreadable record: OutputError
    if staged is None:
        where = store.display(shards.part_path(day, index, count))
        return None, [f"{name} is missing: nothing is staged in {where}"]
    record = staged.record
    if record.get("format") != RECORD_FORMAT:
        return None, [
            f"{name} is stale: staged by another version of the connector "
            f"({record.get('connector_version')}); re-run it with this one"
        ]
    problems = []
    if record.get("snapshot_date") != day.isoformat():
        problems.append(f"{name} is stale: staged for {record.get('snapshot_date')}, not {day}")
    if record.get("part") != [index, count]:
        problems.append(
            f"{name} is duplicated: its record says shard {record.get('shard')} (a copied part)"
        )
    if record.get("fingerprint") != context.fingerprint:
        problems.append(
            f"{name} is stale: staged with another configuration (fingerprint "
            f"{record.get('fingerprint')}, this one {context.fingerprint}); re-run it with "
            "this config"
        )
    targets = record.get("targets")
    if not isinstance(targets, list) or not all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(p, str) for p in t) for t in targets
    ):
        problems.append(f"{name} is damaged: its record's targets are not [org, model] pairs")
        targets = []
    summary = RunSummary.from_dict(record, staged.shown)
    missing = staged.missing_files(store)
    if missing or not staged.record["files"]:
        problems.append(f"{name} is damaged: files missing in {staged.shown}: {missing}")
    return Part(staged, summary, [(org, model) for org, model in targets]), problems
