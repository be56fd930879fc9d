"""Staged shard parts on object storage: the data objects first, `_shard.json` last.

    _shards/YYYY-MM-DD/K-of-N/_shard.json                   the part's record: the commit point
    _shards/YYYY-MM-DD/K-of-N/part-<run>-00000.parquet      streamed under the run's own names
    _shards/YYYY-MM-DD/K-of-N.lock/<run_id>.json            lease marker: one run of the shard

There is no rename on object storage, and none is needed: a part is exactly what its record
lists, and the record is one small object replaced by one PUT, so a reader (`publish`) gets the
old record or the new one, whole. A shard run streams its objects under names of its own run
(never a name the current record lists), then PUTs the new record, and only then deletes what
the record does not list. So at every moment the record lists complete objects that exist: a run
killed mid-upload leaves an unfinished multipart upload (invisible) or an unlisted object, one
killed after the record leaves the older run's unlisted objects. `publish` reads only what the
record lists; the next run of the shard, or the publish, deletes the rest.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import date
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from connector.dataset.schema import DICTIONARY_COLUMNS, FILE_SCHEMA
from connector.dataset.storage import STORAGE_ERRORS, Location, delete_tree, list_entries, put_bytes
from connector.dataset.writer import PublishResult, SnapshotWriter
from connector.errors import OutputError

log = logging.getLogger(__name__)

RECORD_NAME = "_shard.json"


class ObjectPartWriter(SnapshotWriter):
    """Streams a shard's rows into data objects of its part, under names unique to the run."""

    def __init__(
        self,
        location: Location,
        directory: str,
        day: date,
        run_id: str,
        *,
        batch_rows: int = 16_384,
        file_rows: int = 2_000_000,
    ) -> None:
        self.location = location
        self.fs = location.filesystem
        self.directory = directory
        self.committed = False  # set by `stage`: the objects are the part now, never discarded
        self._start(day, run_id, batch_rows, file_rows)

    @property  # the messages of the shared streaming code name this
    def staged(self) -> str:  # type: ignore[override]
        return self.location.display(self.directory)

    def _open_file(self) -> pq.ParquetWriter:
        name = f"part-{self.run_id[:12]}-{len(self.files):05d}.parquet"
        writer = pq.ParquetWriter(
            f"{self.directory}/{name}",
            FILE_SCHEMA,
            compression="zstd",
            use_dictionary=DICTIONARY_COLUMNS,
            filesystem=self.fs,
        )
        self.files.append(name)
        return writer

    def _close_file(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()  # completes the (multipart) upload

    def publish(self, manifest: dict[str, Any]) -> PublishResult:
        """A part is never published by itself: `publish` merges the parts."""
        raise TypeError("a staged shard part is published by `publish`, not by its writer")

    def discard(self) -> None:
        """Delete this run's own objects unless they were staged; the part's record, and the
        objects it lists, are never touched."""
        if self._writer is not None:
            with contextlib.suppress(*STORAGE_ERRORS):
                self._writer.close()  # completes a partial object, unlisted and deleted below
            self._writer = None
        if self.committed:
            return
        for name in self.files:
            try:
                self.fs.delete_file(f"{self.directory}/{name}")
            except FileNotFoundError:
                pass
            except STORAGE_ERRORS as exc:
                log.warning("could not remove %s/%s: %s", self.staged, name, exc)


def stage(
    location: Location, directory: str, writer: ObjectPartWriter, record: dict[str, Any]
) -> str:
    """Commit the writer's closed objects as the part (call with the shard lock held): PUT the
    record that lists them, then delete every object it does not list."""
    names = list(writer.files)
    document = {**record, "files": names}
    text = json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
    shown = location.display(directory)
    try:
        put_bytes(location.filesystem, f"{directory}/{RECORD_NAME}", text.encode("utf-8"))
    except STORAGE_ERRORS as exc:
        raise OutputError(f"cannot stage shard part {shown}: {exc}") from exc
    writer.committed = True
    remove_unlisted(location, directory, {RECORD_NAME, *names})
    return shown


def remove_unlisted(location: Location, directory: str, keep: set[str]) -> None:
    """Delete what a part's record does not list (an earlier or killed run's objects). Never
    fails: leftovers are only storage, `publish` reads nothing the record does not list."""
    try:
        for info in list_entries(location.filesystem, directory):
            if info.base_name in keep:
                continue
            if info.type == pafs.FileType.Directory:
                delete_tree(location.filesystem, info.path)
            else:
                location.filesystem.delete_file(info.path)
    except STORAGE_ERRORS as exc:
        log.warning("could not clean %s: %s", location.display(directory), exc)


def remove_part(location: Location, directory: str) -> None:
    """Delete a part, its record first: from then on it is missing, never half there."""
    with contextlib.suppress(FileNotFoundError):
        location.filesystem.delete_file(f"{directory}/{RECORD_NAME}")
    delete_tree(location.filesystem, directory)
