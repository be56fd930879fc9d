"""A person's decision on a held day: `accept` publishes it as it was observed, `discard`
removes it.

A day a check held (`connector.dataset.held`) is an observation that can never be taken again,
so only a person ends its wait. Both decisions take the output lock (and finish what a killed
run left, `partition.recover`, first) and leave a run record (`outcome` `accepted` or
`discarded`). `accept` publishes the held data file itself, byte for byte, through
`partition.publish_day` (the same atomic replace as every publish), with a manifest whose
`checks` say `overridden`, by whom (the user and host that ran it, and a reason if given);
checks are not run again: the decision is the person's.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
from datetime import date
from typing import Any

from connector.checks.document import failing_text, read_checks
from connector.config import Config
from connector.dataset import held as held_days
from connector.dataset import partition
from connector.dataset.held import HeldDay
from connector.dataset.layout import LOCK_NAME
from connector.dataset.store import OUTPUT_ERRORS, Store
from connector.dates import as_day
from connector.errors import ConfigError, OutputError
from connector.extraction.context import RunContext
from connector.extraction.outcome import Ending, Tally, now, summarize
from connector.extraction.records import recorded, run_settings
from connector.extraction.summary import RunSummary
from connector.loggers import get_logger

log = get_logger(__name__)


def accept(
    config: Config,
    date: date | str,
    run_id: str | None = None,
    output: str | None = None,
    *,
    reason: str | None = None,
) -> RunSummary:
    """Publish the held snapshot of `date` (the one held run, or `run_id`) as it was observed,
    its failing checks recorded as overridden by this user on this host (and `reason`).

    Raises ConfigError (exit 2, nothing done) when no snapshot of that date is held, when
    several are and `run_id` does not say which, or when `run_id` is not one of them;
    LockHeldError when another run holds the output. A publish that fails is in the summary
    (exit 7), the held day kept."""
    day = as_day(date, "date")
    context = _context(config, day, output, action="accept", run=run_id, reason=reason)
    started = time.monotonic()
    with context.store.lock(LOCK_NAME, context.run_id) as lock:
        _recover(context.store)
        chosen = _held_day(context.store, day, run_id)
        try:
            replaced = (partition.read_manifest(context.store, day) or {}).get("run_id")
            published, manifest = _publish(context, chosen, lock.check, reason)
        except OutputError as exc:
            log.error("output failure: %s", exc, extra={"event": "output_failed"})
            ending = Ending(now(), time.monotonic() - started, output_error=exc)
            return recorded(context, summarize(context, Tally(), ending))
        checks = read_checks(manifest, "the accepted manifest")
        message = (
            f"accepted the held snapshot of {day} (run {chosen.run_id}) as observed; its "
            f"failing checks ({failing_text(checks) or 'none'}) are recorded as overridden by "
            f"{checks.override.describe() if checks and checks.override else '?'}"
        )
        if replaced is not None:
            message += f"; it replaced the snapshot of run {replaced}"
        log.info("%s", message, extra={"event": "accepted", "run_id": context.run_id})
        ending = Ending(
            now(),
            time.monotonic() - started,
            published=published,
            checks=manifest.get("checks"),
            message=message,
        )
        return recorded(context, summarize(context, _tally(manifest), ending), outcome="accepted")


def discard(config: Config, date: date | str, run_id: str, output: str | None = None) -> RunSummary:
    """Remove the held snapshot `run_id` of `date` for good.

    Raises ConfigError (exit 2, nothing done) when it is not held; LockHeldError when another
    run holds the output; OutputError when it cannot be removed."""
    day = as_day(date, "date")
    context = _context(config, day, output, action="discard", run=run_id)
    started = time.monotonic()
    with context.store.lock(LOCK_NAME, context.run_id) as lock:
        _recover(context.store)
        chosen = _held_day(context.store, day, run_id)
        lock.check()
        held_days.remove_held(context.store, day, chosen.run_id)
        checks = read_checks(chosen.manifest, "the held manifest") if chosen.manifest else None
        message = (
            f"discarded the held snapshot of {day} (run {chosen.run_id}; its failing checks: "
            f"{failing_text(checks) or 'unknown'}); the published snapshots are unchanged"
        )
        log.info("%s", message, extra={"event": "discarded", "run_id": context.run_id})
        ending = Ending(now(), time.monotonic() - started, message=message)
        return recorded(context, summarize(context, Tally(), ending), outcome="discarded")


def _context(config: Config, day: date, output: str | None, **overrides: Any) -> RunContext:
    settings = run_settings(
        config, output=output or config.output.uri, date=day.isoformat(), **overrides
    )
    return RunContext.build(config, day, output=output, settings=settings)


def _recover(store: Store) -> None:
    for action in partition.recover(store):
        log.warning("%s", action, extra={"event": "staging_recovered"})


def _held_day(store: Store, day: date, run_id: str | None) -> HeldDay:
    """The held day the decision is about; ConfigError naming what is held otherwise."""
    found, _ = held_days.held_days(store, day)
    runs = [held.run_id for held in found]
    if run_id is not None and run_id in runs:
        return found[runs.index(run_id)]
    if run_id is None and len(found) == 1:
        return found[0]
    if not found:
        problem = f"no snapshot of {day} is held (nothing under {store.display('_held')})"
    elif run_id is None:
        problem = (
            f"{len(found)} snapshots of {day} are held (runs {', '.join(runs)}): say which "
            "with --run (connector status shows why each was held)"
        )
    else:
        problem = f"run {run_id} of {day} is not held; held: {', '.join(runs)}"
    raise ConfigError([problem])


def _publish(
    context: RunContext, chosen: HeldDay, check_lock: Any, reason: str | None
) -> tuple[partition.PublishResult, dict[str, Any]]:
    """The held file, published as it is, with its checks marked overridden."""
    store, day = context.store, context.day
    shown = store.display(held_days.data_path(day, chosen.run_id))
    if chosen.manifest is None:
        raise OutputError(f"{chosen.problem}; the held day cannot be published without it")
    if not chosen.has_data:
        raise OutputError(
            f"{shown} is missing: was the day accepted already (see connector status)? "
            "`connector discard` removes what is left of it"
        )
    held_days.check_held(store, chosen)
    read_checks(chosen.manifest, shown)  # a malformed document is refused, never republished
    checks = chosen.manifest.get("checks") or {"results": []}
    override = {
        "by": _user(),
        "host": socket.gethostname(),
        "at": now(),
        "run_id": context.run_id,
        "reason": reason,
    }
    manifest = {
        **chosen.manifest,
        "checks": {**checks, "verdict": "overridden", "override": override},
    }
    check_lock()
    published = partition.publish_day(
        store, day, chosen.run_id, manifest, source=held_days.data_path(day, chosen.run_id)
    )
    try:  # published: from here on nothing may report failure
        held_days.remove_held(store, day, chosen.run_id)
    except OUTPUT_ERRORS as exc:
        log.warning("published, but could not remove %s: %s", shown, exc)
    return published, manifest


def _tally(manifest: dict[str, Any]) -> Tally:
    """What the accepted run fetched (its targets, from its manifest); its failures stay in
    the manifest, this decision failed nothing."""
    targets = manifest.get("targets")
    if not isinstance(targets, dict):
        return Tally()
    return Tally(
        attempted=_count(targets.get("attempted")), succeeded=_count(targets.get("succeeded"))
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _user() -> str:
    """Who ran the decision: the login name, else $USER, else the uid (a container without a
    passwd entry)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or f"uid {os.getuid()}"
