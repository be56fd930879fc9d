"""Staged shard parts: where a `--shard K/N` run leaves its rows until `publish` merges them.

Layout under the output root, outside `model_versions/` so no reader ever sees a part:

    _shards/YYYY-MM-DD/K-of-N/_shard.json            the part's record: the commit point
    _shards/YYYY-MM-DD/K-of-N/part-<run>-00000.parquet
    _shards/YYYY-MM-DD/K-of-N/_work-<run>/...        a run in progress (or killed)
    _shards/YYYY-MM-DD/K-of-N.lock                   one run of that shard at a time

A part is only what its `_shard.json` lists. A re-run writes its files under new names, then
replaces the record in one atomic write, then deletes what the old record listed, so a run
killed at any point leaves either the old part or the new one, complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connector.dataset.lock import RunLock
from connector.dataset.storage import local_root
from connector.dataset.writer import write_json_atomic
from connector.errors import ConfigError, OutputError

log = logging.getLogger(__name__)

SHARDS_DIR = "_shards"
RECORD_NAME = "_shard.json"
WORK_PREFIX = "_work-"


def local_output(uri: str) -> Path:
    """The local root of a sharded run's output; ConfigError (exit 2) for object storage, which
    staged parts do not support yet (nothing is created anywhere)."""
    scheme = urlsplit(uri).scheme
    if scheme not in ("", "file") and len(scheme) > 1:  # len 1: a Windows drive letter
        raise ConfigError(
            [
                f"output.uri: {scheme}:// is not supported for sharded runs yet (--shard, "
                "--processes, publish): use a local path or file://, or run without sharding"
            ]
        )
    return local_root(uri)


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


def shard_lock(root: Path, day: date, index: int, count: int, run_id: str) -> RunLock:
    """The lock one shard run (or a publish reading that part) holds."""
    name = part_name(index, count)
    directory = date_dir(root, day)
    return RunLock(directory, run_id, name=f"{name}.lock", what=f"shard {name} of {directory}")


@dataclass(frozen=True)
class StagedPart:
    """One part as its record describes it."""

    index: int
    count: int
    directory: Path
    record: dict[str, Any]

    @property
    def files(self) -> list[Path]:
        """The part's Parquet files, in order."""
        return [self.directory / name for name in self.record.get("files", [])]


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


def _remove_except(directory: Path, keep: set[str]) -> None:
    for entry in directory.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def read_part(root: Path, day: date, index: int, count: int) -> StagedPart | None:
    """The staged part K-of-N, or None when there is none; OutputError when its record is
    unreadable."""
    directory = part_dir(root, day, index, count)
    path = directory / RECORD_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc}") from exc
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise OutputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise OutputError(f"{path} does not hold a shard record")
    return StagedPart(index, count, directory, record)


def staged_counts(root: Path, day: date) -> list[str]:
    """The part directories staged for a date ('1-of-3', ...), for error messages."""
    directory = date_dir(root, day)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and "-of-" in p.name)


def remove_parts(root: Path, day: date, count: int) -> None:
    """After a publish, with every shard lock of this count held: delete the date's parts and
    their lock files. Never fails: the snapshot is already published, leftovers are only disk
    space. (A shard run that opened a lock file before it went gets "lock held", not a lock
    on a file nobody else can see.)"""
    for index in range(1, count + 1):
        shutil.rmtree(part_dir(root, day, index, count), ignore_errors=True)
        (date_dir(root, day) / f"{part_name(index, count)}.lock").unlink(missing_ok=True)
    for directory in (date_dir(root, day), root / SHARDS_DIR):
        with contextlib.suppress(OSError):  # not empty: other counts or dates are staged
            directory.rmdir()
