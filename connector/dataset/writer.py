"""Dataset layout, streaming Parquet writes into staging, and the atomic publish of a partition.

Layout under the output root:

    model_versions/snapshot_date=YYYY-MM-DD/part-<run>-00000.parquet   the dataset
    model_versions/snapshot_date=YYYY-MM-DD/_manifest.json
    _staging/<run_id>/...        work in progress, outside the dataset so readers never see it
    _rejected/YYYY-MM-DD/...     2xx bodies that failed validation (never error answers)
    _connector.lock              one run at a time

A partition is built complete in `_staging/` and then swapped in with one `renameat2
(RENAME_EXCHANGE)` where the kernel offers it, so readers see the old partition or the new one,
never a mix. Elsewhere it falls back to two renames guarded by a journal that the next run
rolls forward, so even a kill between them loses nothing. Object storage has no rename: its
publisher (`connector.dataset.objectstore`) replaces one fixed-name object instead;
`open_snapshot_writer` and `recover` pick the right one for a Location.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from connector.atomic import fsync_dir, write_atomic
from connector.dataset.flatten import Row, rows_to_table
from connector.dataset.layout import (
    DATASET_DIR,
    STAGING_DIR,
    check_entry,
    inside,
    make_dirs,
)
from connector.dataset.schema import DICTIONARY_COLUMNS, FILE_SCHEMA
from connector.errors import OutputError

if TYPE_CHECKING:
    from connector.dataset.storage import Location

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
_JOURNAL_NAME = "publish-journal.json"
_CHUNK_ROWS = 4096
_LOCAL = pafs.LocalFileSystem()
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def partition_dir(root: Path, day: date) -> Path:
    """Where one snapshot date's files live."""
    return root / DATASET_DIR / f"snapshot_date={day.isoformat()}"


def write_json_atomic(path: Path, document: dict[str, Any], *, mode: int = 0o666) -> None:
    """Write JSON with `write_atomic`, so a reader never sees half of it and it is durable."""
    text = json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
    write_atomic(path, text, mode=mode)


def exchange_paths(first: Path, second: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2); False where unsupported."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        return False
    result = function(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(first))


@dataclass(frozen=True)
class PublishResult:
    """What a publish put in place."""

    partition: Path | str
    files: list[str]
    rows: int


class SnapshotWriter:
    """Streams rows into Parquet files in staging, in bounded batches, then publishes them."""

    def __init__(
        self,
        root: Path,
        day: date,
        run_id: str,
        *,
        batch_rows: int = 16_384,
        file_rows: int = 2_000_000,
        exchange: bool = True,
        work_dir: Path | None = None,
    ) -> None:
        self.root = root
        self._exchange = exchange
        # A shard stages in its own directory (see dataset/shards.py), out of reach of
        # `recover_staging`, which another run may call while the shard is being written.
        self.work_dir = work_dir or root / STAGING_DIR / run_id
        self.staged = self.work_dir / partition_dir(root, day).name
        self._start(day, run_id, batch_rows, file_rows)
        if work_dir is None:  # checked component by component: no planted link is followed
            make_dirs(root, STAGING_DIR, run_id)
        try:
            self.staged.mkdir(parents=work_dir is not None)
        except OSError as exc:
            raise OutputError(f"cannot create staging directory {self.staged}: {exc}") from exc

    def _start(self, day: date, run_id: str, batch_rows: int, file_rows: int) -> None:
        """The buffers every writer shares, wherever its files go."""
        self.day = day
        self.run_id = run_id
        self._batch_rows = batch_rows
        self._file_rows = file_rows
        self._pending: list[Row] = []  # Python rows, converted to Arrow every _CHUNK_ROWS
        self._chunks: list[pa.Table] = []  # compact Arrow chunks waiting to fill a row group
        self._chunk_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._file_rows_written = 0
        self.files: list[str] = []
        self.rows = 0

    def add_rows(self, rows: list[Row]) -> None:
        """Queue rows; a full batch is written as a row group straight away.

        Python rows (dicts) take ~10x the memory of the same rows in Arrow, so they are converted
        in small chunks and only the compact chunks wait for a full row group.
        """
        self._pending.extend(rows)
        if len(self._pending) >= min(_CHUNK_ROWS, self._batch_rows):
            self._convert_pending()
        if self._chunk_rows >= self._batch_rows:
            self._flush()

    def add_table(self, table: pa.Table) -> None:
        """Queue rows that are already Arrow (a staged shard's files, read back at publish)."""
        self._convert_pending()
        self._chunks.append(table.cast(FILE_SCHEMA))
        self._chunk_rows += table.num_rows
        if self._chunk_rows >= self._batch_rows:
            self._flush()

    def _convert_pending(self) -> None:
        if self._pending:
            self._chunks.append(rows_to_table(self._pending))
            self._chunk_rows += len(self._pending)
            self._pending = []

    def _flush(self) -> None:
        self._convert_pending()
        if not self._chunks and self._writer is not None:
            return
        table = pa.concat_tables(self._chunks) if self._chunks else rows_to_table([])
        self._chunks, self._chunk_rows = [], 0
        try:
            if self._writer is None:
                self._writer = self._open_file()
                self._file_rows_written = 0
            self._writer.write_table(table)
            self.rows += table.num_rows
            self._file_rows_written += table.num_rows
            if self._file_rows_written >= self._file_rows:
                self._close_file()
        except (OSError, pa.ArrowException) as exc:
            raise OutputError(f"cannot write Parquet in {self.staged}: {exc}") from exc

    def _open_file(self) -> pq.ParquetWriter:
        name = f"part-{self.run_id[:12]}-{len(self.files):05d}.parquet"
        writer = pq.ParquetWriter(
            str(self.staged / name),
            FILE_SCHEMA,
            compression="zstd",
            use_dictionary=DICTIONARY_COLUMNS,
            filesystem=_LOCAL,  # a local path with ':' in it is never taken for a URI
        )
        self.files.append(name)
        return writer

    def _close_file(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with open(self.staged / self.files[-1], "rb+") as handle:
                os.fsync(handle.fileno())

    def finish(self) -> list[Path]:
        """Write what is buffered and close the files (durably); returns their paths."""
        self.close_files()
        return [self.staged / name for name in self.files]

    def close_files(self) -> None:
        """Write what is buffered and close the files (durably); their names are `files`."""
        if self._pending or self._chunks or not self.files:
            self._flush()  # an empty snapshot still gets one file, so readers see the schema
        self._close_file()

    def publish(self, manifest: dict[str, Any]) -> PublishResult:
        """Finish the files, write the manifest, and swap the partition in atomically."""
        try:
            self.finish()
            manifest = {**manifest, "rows": self.rows, "files": list(self.files)}
            write_json_atomic(self.staged / MANIFEST_NAME, manifest)  # fsyncs `staged` too
            final = partition_dir(self.root, self.day)
            make_dirs(self.root, DATASET_DIR)
            check_entry(final, directory=True)  # a planted link is refused, never replaced
            self._swap_in(final)
        except (OSError, pa.ArrowException) as exc:
            raise OutputError(
                f"cannot publish {partition_dir(self.root, self.day)}: {exc}"
            ) from exc
        # Published: from here on nothing may report failure, or the summary would lie.
        try:
            fsync_dir(final.parent)
        except OSError as exc:
            log.warning("published, but could not fsync %s: %s", final.parent, exc)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        return PublishResult(final, list(self.files), self.rows)

    def _swap_in(self, final: Path) -> None:
        if not final.exists():
            os.rename(self.staged, final)
            return
        if self._exchange and exchange_paths(self.staged, final):
            return  # `staged` now holds the previous partition; removed with the work dir
        previous = self.work_dir / "previous"
        journal = {"final": str(final), "staged": str(self.staged), "previous": str(previous)}
        write_json_atomic(self.work_dir / _JOURNAL_NAME, journal)
        os.rename(final, previous)
        try:
            os.rename(self.staged, final)
        except OSError:
            os.rename(previous, final)  # put the published partition back before reporting
            (self.work_dir / _JOURNAL_NAME).unlink()
            raise

    def discard(self) -> None:
        """Drop everything staged; the published dataset is untouched.

        A work dir that still holds a publish journal may hold the published partition itself
        (a failed rollback): it is left for `recover_staging` rather than deleted.
        """
        if self._writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self._writer.close()
            self._writer = None
        if (self.work_dir / _JOURNAL_NAME).exists():
            log.error("publish of %s was interrupted; the next run completes it", self.staged)
            return
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _restore(final: Path, sources: list[Path]) -> str:
    """Put the first source that can be moved back at `final`; OutputError if none can (the
    work dir is then kept, so nothing is lost)."""
    problems = []
    for source in sources:
        if not source.is_dir():
            continue
        try:
            os.rename(source, final)
        except OSError as exc:
            problems.append(f"{source}: {exc}")
            continue
        return f"completed interrupted publish of {final} from {source.name}"
    raise OutputError(
        f"an earlier run left {final} missing and it cannot be restored "
        f"({'; '.join(problems) or 'no copy found'}); fix the cause, then run again"
    )


def recover_staging(root: Path) -> list[str]:
    """Finish or discard what earlier, interrupted runs left in `_staging/` (call under the lock).

    A journal means a publish was half done: the staged partition was complete, so it is rolled
    forward (or the previous one restored if the staged copy is gone). Anything else is an
    abandoned run and is deleted. Returns what was done, for the log.
    """
    staging = root / STAGING_DIR
    actions: list[str] = []
    if not check_entry(staging, directory=True):  # a link here is refused, never followed
        return actions
    with os.scandir(staging) as listing:
        entries = sorted(listing, key=lambda e: e.name)
    for entry in entries:
        work_dir = Path(entry.path)
        if not entry.is_dir(follow_symlinks=False):  # a link or file: remove the entry only
            os.unlink(work_dir)
            actions.append(f"removed {work_dir.name} from staging (not a directory)")
            continue
        journal_path = work_dir / _JOURNAL_NAME
        if check_entry(journal_path, directory=False):
            final, staged, previous = _read_journal(journal_path, root, work_dir)
            if not os.path.lexists(final):
                actions.append(_restore(final, [staged, previous]))
        shutil.rmtree(work_dir, ignore_errors=True)  # never follows links inside
        actions.append(f"removed leftover staging {work_dir.name}")
    return actions


_MAX_JOURNAL_BYTES = 64 * 1024


def _read_journal(path: Path, root: Path, work_dir: Path) -> tuple[Path, Path, Path]:
    """The (final, staged, previous) paths of a publish journal, refused unless they are
    exactly what `_swap_in` writes: a partition of this root and two entries of `work_dir`.
    A hand-made or corrupt journal must never make a run rename an arbitrary directory."""
    fix = (
        f"check {DATASET_DIR}/ by hand, then delete {work_dir} and run again (nothing was changed)"
    )
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_JOURNAL_BYTES + 1)
        journal = json.loads(raw.decode("utf-8")) if len(raw) <= _MAX_JOURNAL_BYTES else None
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise OutputError(f"the publish journal {path} cannot be read ({exc}); {fix}") from exc
    keys = ("final", "staged", "previous")
    if not isinstance(journal, dict) or not all(isinstance(journal.get(k), str) for k in keys):
        raise OutputError(f"the publish journal {path} is not of the expected shape; {fix}")
    final, staged, previous = (Path(journal[k]) for k in keys)
    name = final.name.removeprefix("snapshot_date=")
    try:
        valid_name = final.name.startswith("snapshot_date=") and bool(date.fromisoformat(name))
    except ValueError:
        valid_name = False
    expected = (
        valid_name
        and final.parent == root / DATASET_DIR
        and staged == work_dir / final.name
        and previous == work_dir / "previous"
        and all(inside(p, root) for p in (final, staged, previous))
    )
    if not expected:
        raise OutputError(
            f"the publish journal {path} names paths outside this run's layout "
            f"({final}, {staged}, {previous}); {fix}"
        )
    check_entry(final, directory=True)
    return final, staged, previous


def open_snapshot_writer(
    location: Location, day: date, run_id: str, *, batch_rows: int = 16_384
) -> SnapshotWriter:
    """The writer for a location: staging + rename locally, one replaced object on S3."""
    if location.is_local:
        return SnapshotWriter(location.local_path, day, run_id, batch_rows=batch_rows)
    from connector.dataset.objectstore import ObjectStoreWriter

    return ObjectStoreWriter(location, day, run_id, batch_rows=batch_rows)


def recover(location: Location) -> list[str]:
    """Clean up after interrupted runs (call under the lock), wherever the output lives."""
    if location.is_local:
        return recover_staging(location.local_path)
    from connector.dataset.objectstore import recover_object_staging

    return recover_object_staging(location)
