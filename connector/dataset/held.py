"""Held days: a staged day that a check held, kept until a person accepts or discards it.

    _held/YYYY-MM-DD/<run_id>/part-00000.parquet   the day's rows as observed (its footer holds
                                                   the run's manifest)
    _held/YYYY-MM-DD/<run_id>/_manifest.json        that manifest, with the check results
    _staging/<run_id>/hold.json                     the journal of a hold, until it is complete

An observation of download counters can never be taken again, so a day a check holds is moved,
not deleted: the journal is written first, then the manifest, then the staged data file is
`move`d (atomic on both stores: a rename, or a server-side copy then a delete). A run killed, or
a store failing, at any step leaves the journal and the staged file in `_staging/`, and the next
run under the output lock (`partition.recover`, which calls `finish_hold`) completes the move
before it removes anything. `_held/` lies outside `model_versions/`, so no reader of the dataset
ever sees a held day; nothing but `connector accept` (which publishes it through
`partition.publish_day`) and `connector discard` removes one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from connector.dataset.datafile import encode, read_footer
from connector.dataset.layout import DATA_NAME, HELD_DIR, MANIFEST_NAME, held_path, staging_path
from connector.dataset.state import parse_json
from connector.dataset.store import OUTPUT_ERRORS, Store
from connector.errors import OutputError
from connector.loggers import get_logger

log = get_logger(__name__)

HOLD_JOURNAL = "hold.json"
MANIFEST_BYTES = 4 * 1024 * 1024  # a manifest's lists are bounded: far below this
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def data_path(day: date, run_id: str) -> str:
    """The held day's data file."""
    return f"{held_path(day, run_id)}/{DATA_NAME}"


def hold_day(store: Store, day: date, run_id: str, manifest: dict[str, Any]) -> str:
    """Move the run's staged day (`_staging/<run_id>/part-00000.parquet`) to `_held/` with its
    manifest; returns where it is, as a person would type it. Raises OutputError with the day
    still staged and its journal written (the next run finishes the move), or, if even the
    journal could not be written, with the day's parts still staged in `_shards/`."""
    journal = {"day": day.isoformat(), "run_id": run_id, "manifest": manifest}
    store.put(f"{staging_path(run_id)}/{HOLD_JOURNAL}", encode(journal))
    try:
        _complete(store, day, run_id, manifest)
    except OutputError as exc:
        raise OutputError(
            f"a check held the snapshot of {day.isoformat()}, but moving it to "
            f"{store.display(held_path(day, run_id))} failed ({exc}); it is kept in "
            f"{store.display(staging_path(run_id))} and the next run moves it"
        ) from exc
    try:
        store.delete_tree(staging_path(run_id))
    except OUTPUT_ERRORS as exc:  # only space: the next run removes it
        log.warning("could not remove %s: %s", store.display(staging_path(run_id)), exc)
    return store.display(held_path(day, run_id))


def _complete(store: Store, day: date, run_id: str, manifest: dict[str, Any]) -> None:
    """The hold's steps after its journal; each may run again (a killed hold)."""
    store.put(f"{held_path(day, run_id)}/{MANIFEST_NAME}", encode(manifest))
    staged = f"{staging_path(run_id)}/{DATA_NAME}"
    if store.info(staged) is not None:
        store.move(staged, data_path(day, run_id))
    elif store.info(data_path(day, run_id)) is None:
        raise OutputError(f"the staged data file {store.display(staged)} is missing")


def finish_hold(store: Store, work: str) -> list[str]:
    """Complete the hold a killed run journalled in the staging directory `work` (call under
    the output lock, before `work` is removed); returns what was done, for the log."""
    path = f"{work}/{HOLD_JOURNAL}"
    raw = store.get(path, limit=MANIFEST_BYTES)
    if raw is None:
        return []
    shown = store.display(path)
    journal = parse_json(raw, shown)
    if not isinstance(journal, dict):
        journal = {}
    day, run_id, manifest = (journal.get(key) for key in ("day", "run_id", "manifest"))
    if not (
        isinstance(day, str)
        and _is_day(day)
        and isinstance(run_id, str)
        and work == staging_path(run_id)
        and isinstance(manifest, dict)
    ):
        raise OutputError(
            f"the hold journal {shown} is not of the expected shape; check it by hand, then "
            f"move its data file to {HELD_DIR}/ or delete {store.display(work)} (nothing was "
            "changed)"
        )
    held = date.fromisoformat(day)
    _complete(store, held, run_id, manifest)
    return [f"moved the held snapshot of {day} to {store.display(held_path(held, run_id))}"]


@dataclass(frozen=True)
class HeldDay:
    """One held day as `_held/` holds it; `manifest` is None and `problem` says why when its
    manifest is missing or unreadable, `has_data` False when its data file is missing."""

    day: date
    run_id: str
    manifest: dict[str, Any] | None
    has_data: bool
    problem: str | None = None


def held_days(store: Store, day: date | None = None) -> tuple[list[HeldDay], list[str]]:
    """Every held day (of `day` only, if given), sorted, and what is wrong in `_held/` (an
    entry the connector did not put there); never follows a link."""
    found: list[HeldDay] = []
    problems: list[str] = []
    for dated in store.list(HELD_DIR):
        where = f"{HELD_DIR}/{dated.name}"
        if dated.kind != "dir" or not _is_day(dated.name):
            problems.append(f"{store.display(where)} is not a held day (not a YYYY-MM-DD folder)")
            continue
        if day is not None and dated.name != day.isoformat():
            continue
        for run in store.list(where):
            if run.kind != "dir" or not _RUN_ID.match(run.name):
                problems.append(f"{store.display(f'{where}/{run.name}')} is not a held run")
                continue
            found.append(read_held(store, date.fromisoformat(dated.name), run.name))
    return found, problems


def _is_day(text: str) -> bool:
    """YYYY-MM-DD, a day of the calendar."""
    if not _DAY.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def read_held(store: Store, day: date, run_id: str) -> HeldDay:
    """One held day; a manifest that is missing, too large or not a JSON object is a
    `problem`, never an exception."""
    path = f"{held_path(day, run_id)}/{MANIFEST_NAME}"
    has_data = store.info(data_path(day, run_id)) is not None
    try:
        raw = store.get(path, limit=MANIFEST_BYTES)
        document = None if raw is None else parse_json(raw, store.display(path))
    except OutputError as exc:
        return HeldDay(day, run_id, None, has_data, str(exc))
    if not isinstance(document, dict):
        what = "is missing" if raw is None else "does not hold a JSON object"
        return HeldDay(day, run_id, None, has_data, f"{store.display(path)} {what}")
    return HeldDay(day, run_id, document, has_data)


def check_held(store: Store, held: HeldDay) -> None:
    """The held data file must be the one its manifest describes (run and rows), as a staged
    file must before a publish; OutputError naming it otherwise."""
    path = data_path(held.day, held.run_id)
    footer = read_footer(store, path) or {}
    rows = (held.manifest or {}).get("rows")
    if footer.get("run_id") != held.run_id or footer.get("rows") != rows:
        raise OutputError(
            f"the held file {store.display(path)} holds {footer.get('rows')} rows of run "
            f"{footer.get('run_id')}, its manifest says {rows} of {held.run_id}; nothing was "
            "published"
        )


def remove_held(store: Store, day: date, run_id: str) -> None:
    """Delete one held day (its directory, and the date's directory once empty)."""
    store.delete_tree(held_path(day, run_id))
    if not store.list(f"{HELD_DIR}/{day.isoformat()}"):
        store.delete_tree(f"{HELD_DIR}/{day.isoformat()}")
