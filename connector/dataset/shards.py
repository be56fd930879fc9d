"""Staged shard parts: where a `--shard K/N` run leaves its rows until `publish` merges them.

Layout under the output root, outside `model_versions/` so no reader ever sees a part:

    _shards/YYYY-MM-DD/K-of-N/_shard.json            the part's record: the commit point
    _shards/YYYY-MM-DD/K-of-N/part-<run>-00000.parquet
    _shards/YYYY-MM-DD/K-of-N/_work-<run>/...        a run in progress (or killed; local only)
    _shards/YYYY-MM-DD/K-of-N.lock                   one run of that shard at a time

A part is only what its `_shard.json` lists. A re-run writes its files under new names, then
replaces the record in one atomic write, then deletes what the old record listed, so a run
killed at any point leaves either the old part or the new one, complete. Locally the files are
written in a work directory and moved in; on object storage (`connector.dataset.objectshards`)
they are streamed straight into the part under the run's own names, and the lock is a lease.
Every function takes a local root (a Path) or a Location.

Locally the staging area is part of the connector's layout (`connector.dataset.layout`): its
directories are created component by component, and a link or an entry of the wrong type where
a directory, lock, record or Parquet file of a part belongs is refused, never followed; a record
may only name files inside its own part.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from connector.dataset import objectshards
from connector.dataset.layout import check_entry, make_dirs
from connector.dataset.lock import OutputLock, RunLock
from connector.dataset.objectshards import RECORD_NAME, ObjectPartWriter
from connector.dataset.storage import (
    STORAGE_ERRORS,
    Location,
    list_entries,
    local_location,
    read_bytes,
)
from connector.dataset.writer import SnapshotWriter, write_json_atomic
from connector.errors import OutputError

log = logging.getLogger(__name__)

SHARDS_DIR = "_shards"
WORK_PREFIX = "_work-"
__all__ = ["RECORD_NAME", "SHARDS_DIR", "WORK_PREFIX", "StagedPart"]

Root = Path | Location
_READ_ERRORS: tuple[type[BaseException], ...] = (*STORAGE_ERRORS, UnicodeDecodeError)


def _location(root: Root) -> Location:
    return root if isinstance(root, Location) else local_location(root)


def date_dir(root: Path, day: date) -> Path:
    """Where every staged part of one snapshot date lives."""
    return root / SHARDS_DIR / day.isoformat()


def part_name(index: int, count: int) -> str:
    """'2-of-4'."""
    return f"{index}-of-{count}"


def part_dir(root: Path, day: date, index: int, count: int) -> Path:
    """The directory of one staged part."""
    return date_dir(root, day) / part_name(index, count)


def work_dir(root: Path, day: date, index: int, count: int, run_id: str) -> Path:
    """Where a shard run writes its files before staging them (inside its part directory)."""
    return part_dir(root, day, index, count) / f"{WORK_PREFIX}{run_id}"


def part_path(root: Root, day: date, index: int, count: int) -> str:
    """One staged part's directory (local) or prefix (object storage), in the filesystem's
    own syntax."""
    if isinstance(root, Path):
        return str(part_dir(root, day, index, count))
    return root.join(SHARDS_DIR, day.isoformat(), part_name(index, count))


def shard_lock(root: Root, day: date, index: int, count: int, run_id: str) -> OutputLock:
    """The lock one shard run (or a publish reading that part) holds: an flock on
    `K-of-N.lock` locally, a lease with its markers under `K-of-N.lock/` on object storage."""
    name = part_name(index, count)
    location = _location(root)
    if location.is_local:
        directory = make_dirs(_made_root(location.local_path), SHARDS_DIR, day.isoformat())
        return RunLock(directory, run_id, name=f"{name}.lock", what=f"shard {name} of {directory}")
    from connector.dataset.lease import ObjectStoreLock

    scope = f"{SHARDS_DIR}/{day.isoformat()}/{name}.lock"
    return ObjectStoreLock(location, run_id, scope=scope)


def open_part_writer(
    location: Location, day: date, index: int, count: int, run_id: str, *, batch_rows: int
) -> SnapshotWriter:
    """The writer of one shard run's files: a work directory inside the part locally, the
    part's own prefix (under this run's names) on object storage."""
    if location.is_local:
        root = location.local_path
        part = make_dirs(_made_root(root), SHARDS_DIR, day.isoformat(), part_name(index, count))
        _check_files(part)  # the run replaces them: never through a link
        return SnapshotWriter(
            root,
            day,
            run_id,
            batch_rows=batch_rows,
            work_dir=make_dirs(part, f"{WORK_PREFIX}{run_id}"),
        )
    directory = part_path(location, day, index, count)
    return ObjectPartWriter(location, directory, day, run_id, batch_rows=batch_rows)


def commit(
    location: Location,
    day: date,
    index: int,
    count: int,
    writer: SnapshotWriter,
    record: dict[str, Any],
) -> str:
    """Make the writer's closed files the shard's part (call with the shard lock held); returns
    where the part is, as a person would type it."""
    if isinstance(writer, ObjectPartWriter):
        return objectshards.stage(location, part_path(location, day, index, count), writer, record)
    files = [writer.staged / name for name in writer.files]
    return str(stage(location.local_path, day, index, count, files, record))


def drop_part(root: Root, day: date, index: int, count: int) -> None:
    """Unstage a part: its record goes, so `publish` reports the shard missing."""
    location = _location(root)
    record = f"{part_path(location, day, index, count)}/{RECORD_NAME}"
    if location.is_local:
        (part_dir(location.local_path, day, index, count) / RECORD_NAME).unlink(missing_ok=True)
        return
    try:
        location.filesystem.delete_file(record)
    except FileNotFoundError:
        pass
    except STORAGE_ERRORS as exc:
        raise OutputError(f"cannot unstage {location.display(record)}: {exc}") from exc


@dataclass(frozen=True)
class StagedPart:
    """One part as its record describes it."""

    index: int
    count: int
    location: Location
    directory: str
    record: dict[str, Any]

    @property
    def shown(self) -> str:
        """The part's directory as a person would type it (s3://... for objects)."""
        return self.location.display(self.directory)

    @property
    def files(self) -> list[str]:
        """The part's Parquet files, in order (paths in the location's filesystem)."""
        return [self._child(name) for name in self.record.get("files", [])]

    def missing_files(self) -> list[str]:
        """The names of the listed files that are not there (a damaged part)."""
        names = [str(name) for name in self.record.get("files", [])]
        if self.location.is_local:
            return [name for name in names if not Path(self._child(name)).is_file()]
        try:
            infos = self.location.filesystem.get_file_info([self._child(n) for n in names])
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot list the staged part {self.shown}: {exc}") from exc
        return [n for n, info in zip(names, infos, strict=True) if info.type != pafs.FileType.File]

    def _child(self, name: str) -> str:
        if self.location.is_local:
            return str(Path(self.directory, name))
        return f"{self.directory}/{name}"


def stage(
    root: Path, day: date, index: int, count: int, files: list[Path], record: dict[str, Any]
) -> Path:
    """Move a finished shard run's files into its part and commit the new record (call with the
    shard lock held); whatever an earlier run of the shard staged is then deleted."""
    directory = part_dir(root, day, index, count)
    try:
        for path in files:
            os.replace(path, directory / path.name)
        # Written last: its directory fsync also makes the moves above durable.
        write_json_atomic(
            directory / RECORD_NAME, {**record, "files": [path.name for path in files]}
        )
    except OSError as exc:
        name = part_name(index, count)
        raise OutputError(f"cannot stage shard {name} in {directory}: {exc}") from exc
    keep = {RECORD_NAME, *(path.name for path in files)}
    _remove_except(directory, keep)
    return directory


def _made_root(root: Path) -> Path:
    """The output root, created if absent (it may be a link: the operator chose it)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output directory {root}: {exc}") from exc
    return root


def _check_files(directory: Path) -> None:
    """Refuse a part whose record or a Parquet file is a link or not a regular file."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name == RECORD_NAME or entry.name.endswith(".parquet"):
                check_entry(Path(entry.path), directory=False)


def _remove_except(directory: Path, keep: set[str]) -> None:
    for entry in directory.iterdir():
        if entry.name not in keep:
            _remove(entry)


def _remove(path: Path) -> None:
    """Delete an entry without following a link: a link or file is unlinked, only a real
    directory is removed with what it holds (rmtree does not follow links inside it)."""
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return
    if is_dir:
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _local_part(root: Path, day: date, index: int, count: int) -> Path | None:
    """The part's directory if it exists, each component checked with `lstat` (OutputError
    for a link or a file); None when any is absent."""
    path = root
    for name in (SHARDS_DIR, day.isoformat(), part_name(index, count)):
        path = path / name
        if not check_entry(path, directory=True):
            return None
    return path


def _plain_name(name: object) -> bool:
    """A file name inside the part: no directory, no `..`, not absolute."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(char in name for char in "/\\\0")
    )


def read_part(root: Root, day: date, index: int, count: int) -> StagedPart | None:
    """The staged part K-of-N, or None when there is none; OutputError when its record is
    unreadable."""
    location = _location(root)
    directory = part_path(location, day, index, count)
    path = str(Path(directory, RECORD_NAME)) if location.is_local else f"{directory}/{RECORD_NAME}"
    shown = location.display(path)
    local = location.is_local
    if local and (
        _local_part(location.local_path, day, index, count) is None
        or not check_entry(Path(path), directory=False)
    ):
        return None
    try:
        if local:
            text = Path(path).read_text(encoding="utf-8")
        else:
            raw = read_bytes(location.filesystem, path)
            if raw is None:
                return None
            text = raw.decode("utf-8")
    except FileNotFoundError:
        return None
    except _READ_ERRORS as exc:
        raise OutputError(f"cannot read {shown}: {exc}") from exc
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise OutputError(f"{shown} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise OutputError(f"{shown} does not hold a shard record")
    files = record.get("files", [])
    if not isinstance(files, list) or not all(_plain_name(name) for name in files):
        raise OutputError(
            f"{shown} lists files outside its part directory {location.display(directory)} "
            f"(only plain file names are allowed): {files!r:.200}; nothing was read"
        )
    part = StagedPart(index, count, location, directory, record)
    if local:
        for name in files:  # read at publish: never through a link
            check_entry(Path(directory, name), directory=False)
    return part


def staged_counts(root: Root, day: date) -> list[str]:
    """The part directories staged for a date ('1-of-3', ...), for error messages."""
    location = _location(root)
    if location.is_local:
        directory = date_dir(location.local_path, day)
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.is_dir() and "-of-" in p.name)
    prefix = location.join(SHARDS_DIR, day.isoformat())
    try:
        entries = list_entries(location.filesystem, prefix)
    except STORAGE_ERRORS as exc:
        raise OutputError(f"cannot list {location.display(prefix)}: {exc}") from exc
    return sorted(
        info.base_name
        for info in entries
        if info.type == pafs.FileType.Directory
        and "-of-" in info.base_name
        and not info.base_name.endswith(".lock")  # a lease's markers, not a part
    )


def remove_parts(root: Root, day: date, count: int) -> None:
    """After a publish, with every shard lock of this count held: delete the date's parts and
    their lock files. Never fails: the snapshot is already published, leftovers are only disk
    space. (A shard run that opened a lock file before it went gets "lock held", not a lock
    on a file nobody else can see.) On object storage each part's record goes first, so a
    part is whole or missing; the lease markers go when the locks are released."""
    location = _location(root)
    if not location.is_local:
        for index in range(1, count + 1):
            try:
                objectshards.remove_part(location, part_path(location, day, index, count))
            except STORAGE_ERRORS as exc:
                log.warning(
                    "published, but could not remove shard part %d/%d: %s", index, count, exc
                )
        return
    local = location.local_path
    try:  # never through a link: a planted `_shards` or date directory is left alone
        real = all(
            check_entry(p, directory=True) for p in (local / SHARDS_DIR, date_dir(local, day))
        )
    except OutputError as exc:
        log.warning("published, but did not remove the shard parts: %s", exc)
        return
    if not real:
        return
    for index in range(1, count + 1):
        _remove(part_dir(local, day, index, count))
        _remove(date_dir(local, day) / f"{part_name(index, count)}.lock")
    for directory in (date_dir(local, day), local / SHARDS_DIR):
        with contextlib.suppress(OSError):  # not empty: other counts or dates are staged
            directory.rmdir()
