"""Staged parts: where each part of a run (a `--shard K/N`, one of `--processes P`, or the whole
of a one-process run) leaves its rows until the publish merges them.

    _shards/YYYY-MM-DD/K-of-N/_shard.json              the part's record: the commit point
    _shards/YYYY-MM-DD/K-of-N/part-<run>-00000.parquet  written under the run's own names
    _shards/YYYY-MM-DD/K-of-N.lock                     one run of that part at a time

A part is exactly what its record lists. A run writes its data files under names of its own
(never a name the current record lists), then replaces the record in one atomic put, then
deletes what the record does not list; so at every moment the record lists complete files that
exist: a run killed at any point leaves either the old part or the new one, whole, plus files
nobody lists, which the next run of the part (or the publish) deletes. The record is read back
as untrusted (`read_part`): only plain file names of its own directory, the shape checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from connector.dataset.datafile import DataFileWriter, encode
from connector.dataset.layout import SHARDS_DIR, refusal
from connector.dataset.state import parse_json
from connector.dataset.store import OUTPUT_ERRORS, Lock, Store
from connector.errors import OutputError
from connector.loggers import get_logger

log = get_logger(__name__)

RECORD_NAME = "_shard.json"
_RECORD_BYTES = 16 * 1024 * 1024


def part_name(index: int, count: int) -> str:
    """'2-of-4'."""
    return f"{index}-of-{count}"


def date_path(day: date) -> str:
    """Where every staged part of one snapshot date lives."""
    return f"{SHARDS_DIR}/{day.isoformat()}"


def part_path(day: date, index: int, count: int) -> str:
    """The directory of one staged part."""
    return f"{date_path(day)}/{part_name(index, count)}"


def shard_lock(store: Store, day: date, index: int, count: int, run_id: str) -> Lock:
    """The lock a run of one part (or a publish reading it) holds."""
    return store.lock(f"{part_path(day, index, count)}.lock", run_id)


def check_part(store: Store, day: date, index: int, count: int) -> None:
    """Refuse a part whose directory, record or a data file is not what the connector writes
    there (a link, a directory where a file belongs), before a run of the part touches it."""
    directory = part_path(day, index, count)
    for entry in store.list(directory):  # every component of the path is checked too
        if (entry.name == RECORD_NAME or entry.name.endswith(".parquet")) and entry.kind != "file":
            what = "is a symbolic link" if entry.kind == "link" else "is not a regular file"
            raise refusal(store.display(f"{directory}/{entry.name}"), what)


def open_part_writer(
    store: Store, day: date, index: int, count: int, run_id: str, *, batch_rows: int
) -> DataFileWriter:
    """The writer of one part run's files, under names of its own run."""
    return DataFileWriter(
        store, part_path(day, index, count), prefix=f"part-{run_id[:12]}", batch_rows=batch_rows
    )


def commit(
    store: Store, day: date, index: int, count: int, files: list[str], record: dict[str, Any]
) -> str:
    """Make the closed files the part (call with the part's lock held): put the record that
    lists them, then delete every entry it does not list. Returns where the part is."""
    directory = part_path(day, index, count)
    store.put(f"{directory}/{RECORD_NAME}", encode({**record, "files": files}))
    remove_unlisted(store, directory, {RECORD_NAME, *files})
    return store.display(directory)


def remove_unlisted(store: Store, directory: str, keep: set[str]) -> None:
    """Delete what a part's record does not list (an earlier or killed run's files, a planted
    link: removed itself, never followed). Never fails: leftovers are only space."""
    try:
        for entry in store.list(directory):
            if entry.name in keep and entry.kind == "file":
                continue
            if entry.kind == "dir":
                store.delete_tree(f"{directory}/{entry.name}")
            else:
                store.delete(f"{directory}/{entry.name}")
    except OUTPUT_ERRORS as exc:
        log.warning("could not clean %s: %s", store.display(directory), exc)


def drop_part(store: Store, day: date, index: int, count: int) -> None:
    """Unstage a part: its record goes, so the publish reports the part missing."""
    store.delete(f"{part_path(day, index, count)}/{RECORD_NAME}")


@dataclass(frozen=True)
class StagedPart:
    """One part as its record describes it (the record was checked by `read_part`)."""

    index: int
    count: int
    directory: str
    record: dict[str, Any]
    shown: str

    @property
    def files(self) -> list[str]:
        """The part's data files, in order (store paths)."""
        return [f"{self.directory}/{name}" for name in self.record["files"]]

    def missing_files(self, store: Store) -> list[str]:
        """The names of the listed files that are not there (a damaged part); a listed file
        that is a link or not a regular file is refused (OutputError), never read."""
        kinds = {entry.name: entry.kind for entry in store.list(self.directory)}
        for name in self.record["files"]:
            kind = kinds.get(name, "file")
            if kind != "file":
                what = "is a symbolic link" if kind == "link" else "is not a regular file"
                raise refusal(store.display(f"{self.directory}/{name}"), what)
        return [name for name in self.record["files"] if name not in kinds]


def _plain_name(name: object) -> bool:
    """A file name inside the part: no directory, no `..`, not absolute."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not name.startswith(".")
        and not any(char in name for char in "/\\\0")
    )


def read_part(store: Store, day: date, index: int, count: int) -> StagedPart | None:
    """The staged part K-of-N, or None when there is none; OutputError when its record is
    unreadable or names files outside its directory."""
    directory = part_path(day, index, count)
    path = f"{directory}/{RECORD_NAME}"
    shown = store.display(path)
    raw = store.get(path, limit=_RECORD_BYTES)
    if raw is None:
        return None
    record = parse_json(raw, shown)
    if not isinstance(record, dict):
        raise OutputError(f"{shown} does not hold a shard record")
    files = record.get("files")
    if not isinstance(files, list) or not all(_plain_name(name) for name in files):
        raise OutputError(
            f"{shown} lists files outside its part directory {store.display(directory)} "
            f"(only plain file names are allowed): {files!r:.200}; nothing was read"
        )
    return StagedPart(index, count, directory, record, store.display(directory))


def staged_counts(store: Store, day: date) -> list[str]:
    """The part directories staged for a date ('1-of-3', ...), for error messages."""
    return [
        entry.name
        for entry in store.list(date_path(day))
        if entry.kind == "dir" and "-of-" in entry.name and not entry.name.endswith(".lock")
    ]


def remove_parts(store: Store, day: date, count: int) -> None:
    """After a publish, with every part lock of this count held: delete the date's parts, each
    record first (a part is whole or missing, never half there), and their lock files. Never
    fails: the snapshot is already published, leftovers are only space. (A run of a part that
    opened a lock file before it went gets "lock held", not a lock nobody else can see.)"""
    for index in range(1, count + 1):
        directory = part_path(day, index, count)
        try:
            entry = store.info(directory)
            if entry is not None and entry.kind == "dir":
                store.delete(f"{directory}/{RECORD_NAME}")
            store.delete_tree(directory)  # a link in its place is removed itself
            if store.is_local:  # a lease's markers go when the lease is released
                store.delete(f"{directory}.lock")
        except OUTPUT_ERRORS as exc:
            log.warning("published, but could not remove part %d/%d: %s", index, count, exc)
    for directory in (date_path(day), SHARDS_DIR):
        try:
            if not store.list(directory):
                store.delete_tree(directory)
        except OUTPUT_ERRORS:
            pass  # not empty, or not ours to judge: other counts or dates are staged
