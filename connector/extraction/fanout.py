"""One shard of a snapshot: fetch the targets of shard K of N and stage them for `publish`.

A shard run takes only its own shard's lock, so the N shards of a date can run at once on
any machines that share the output (a local path or object storage); `publish` then takes the
output lock and every shard lock.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from connector._version import __version__
from connector.config import Config, validate_output
from connector.dataset import shards as staging
from connector.dataset.schema import SCHEMA_VERSION
from connector.dataset.storage import STORAGE_ERRORS, locate_output
from connector.errors import ConfigError, OutputError
from connector.extraction.interrupt import Interrupt
from connector.extraction.outcome import (
    Ending,
    RunInfo,
    Stop,
    Tally,
    now,
    stopped_by_signal,
    summarize,
)
from connector.extraction.sharding import Shard, check_shard, fingerprint
from connector.extraction.summary import RunSummary

log = logging.getLogger(__name__)


def extract_sharded(
    config: Config,
    day: date,
    output: str | None,
    min_success_ratio: float | None,
    progress: bool | None,
    *,
    shard: Shard | None,
    processes: int,
    backdated: bool = False,
    replace: bool = False,
    interrupt: Interrupt | None = None,
) -> RunSummary:
    """`extract(shard=...)` or `extract(processes=...)`: check the combination, then run
    (the snapshot date was checked by `extract`)."""
    if processes < 1:
        raise ConfigError([f"--processes must be at least 1, got {processes}"])
    if shard is not None and processes != 1:
        raise ConfigError(["--shard and --processes cannot be combined: run one or the other"])
    uri = validate_output({"uri": output}).uri if output else config.output.uri
    if shard is None:
        from connector.extraction.processes import extract_processes

        return extract_processes(
            config,
            day,
            uri,
            processes,
            min_success_ratio,
            progress,
            backdated=backdated,
            replace=replace,
            interrupt=interrupt,
        )
    return extract_shard(
        config,
        day,
        uri,
        check_shard(shard),
        progress=progress,
        backdated=backdated,
        interrupt=interrupt,
    )


def extract_shard(
    config: Config,
    day: date,
    uri: str,
    shard: Shard,
    *,
    progress: bool | None = None,
    tick: Callable[[bool], None] | None = None,
    fingerprint_of: Config | None = None,
    backdated: bool = False,
    interrupt: Interrupt | None = None,
) -> RunSummary:
    """Fetch shard K of N and stage it, replacing what an earlier run of that shard staged.

    `fingerprint_of` is the config the part is stamped with when it differs from the one used
    to fetch (`--processes` splits the rate limit, which does not change the snapshot).
    """
    from connector.extraction.run import fetch_all

    started = time.monotonic()
    index, count = shard
    location = locate_output(uri, config.output.storage_mapping())
    info = RunInfo(
        run_id=uuid.uuid4().hex,
        day=day,
        uri=uri,
        started_at=now(),
        min_success_ratio=0.0,  # a shard publishes nothing: the guard applies at publish
        backdated=backdated,
        warnings=list(config.warnings),
        shard=f"{index}/{count}",
    )
    tally = Tally()
    finished_at: str | None = None
    output_error: OutputError | None = None
    staged: str | None = None
    stopped: Stop | None = None
    rows, names = 0, []
    with staging.shard_lock(location, day, index, count, info.run_id) as lock:
        writer = staging.open_part_writer(
            location, day, index, count, info.run_id, batch_rows=config.output.batch_rows
        )
        try:
            targets = fetch_all(
                config,
                info,
                tally,
                writer,
                location,
                progress,
                shard=shard,
                tick=tick,
                interrupt=interrupt,
            )
            if interrupt is not None and interrupt.requested:
                stopped = stopped_by_signal(interrupt)  # a signal: the earlier part stays
            elif tally.incompatible is not None:
                # Nothing of this connector version may be published: drop the older part too,
                # so `publish` reports the shard missing until an upgraded run stages it.
                staging.drop_part(location, day, index, count)
            else:
                try:
                    writer.close_files()
                except STORAGE_ERRORS as exc:
                    raise OutputError(f"cannot write Parquet in {writer.staged}: {exc}") from exc
                finished_at = now()
                rows, names = writer.rows, list(writer.files)
                draft = summarize(
                    info, tally, Ending(finished_at=finished_at, rows=rows, files=names)
                )
                record = _record(draft, targets, fingerprint(fingerprint_of or config, uri))
                lock.check()  # a lost lease: another run of this shard may be staging now
                staged = staging.commit(location, day, index, count, writer, record)
        except OutputError as exc:
            output_error = exc
            log.error("output failure: %s", exc, extra={"event": "output_failed"})
        finally:
            writer.discard()  # what was not staged: the work dir, or this run's objects
    ending = Ending(
        finished_at=finished_at or now(),
        elapsed=time.monotonic() - started,
        output_error=output_error,
        staged=staged,
        rows=rows if staged else 0,
        files=names if staged else [],
        stopped=stopped,
    )
    summary = summarize(info, tally, ending)
    if summary.staged:
        log.info(
            "staged shard %s: %d rows in %s",
            summary.shard,
            summary.rows,
            summary.staged,
            extra={"event": "shard_staged", "run_id": info.run_id},
        )
    return summary


def _record(summary: RunSummary, targets: list[tuple[str, str]], digest: str) -> dict[str, Any]:
    """What `publish` needs from a shard, besides its rows (no token: see `fingerprint`)."""
    index, count = (int(part) for part in (summary.shard or "").split("/"))
    return {
        "format": 1,
        "snapshot_date": summary.snapshot_date,
        "shard": [index, count],
        "fingerprint": digest,
        "run_id": summary.run_id,
        "connector_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "started_at": summary.started_at,
        "finished_at": summary.finished_at,
        "targets": [[org, model] for org, model in targets],
        "targets_succeeded": summary.targets_succeeded,
        "requests": summary.requests,
        "requests_by_operation": summary.requests_by_operation,
        "failures": [failure.to_dict() for failure in summary.failures],
        "auth_failed_orgs": summary.auth_failed_orgs,
        "discovery_failed_orgs": summary.discovery_failed_orgs,
        "dropped_versions": summary.dropped_versions,
        "backdated": summary.backdated,
        "rejected_dir": summary.rejected_dir,
        "rows": summary.rows,
    }
