"""Publishing a partition on object storage, where there is no rename: one fixed-name object.

    <root>/_staging/<run_id>/snapshot_date=D/part-00000.parquet   streamed here first
    <root>/model_versions/snapshot_date=D/part-00000.parquet       replaced by one server-side copy
    <root>/model_versions/snapshot_date=D/_manifest.json           written after the data object

A partition holds exactly one data object under a fixed name, so a listing shows one data object
at every moment, and an S3 object is replaced atomically: a reader gets the whole previous object
or the whole new one. The data is streamed (multipart) to staging, never straight to the final
name: pyarrow completes an upload when its stream is destroyed, so a run failing mid-write would
otherwise publish half a file. The staged object's footer is checked (row count, run id) before
the copy. The manifest is embedded in that footer (`connector.manifest`), so the data object is
self-describing and its manifest can never disagree with it; `_manifest.json` is a copy written
after, for tools that look for it. A journal in staging lets the next run repair that copy when a
run was killed between the two writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import date
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from connector.dataset.layout import DATASET_DIR, STAGING_DIR
from connector.dataset.schema import DICTIONARY_COLUMNS, FILE_SCHEMA
from connector.dataset.storage import (
    STORAGE_ERRORS,
    Location,
    delete_tree,
    list_entries,
    put_bytes,
    read_bytes,
)
from connector.dataset.writer import MANIFEST_NAME, PublishResult, SnapshotWriter
from connector.errors import OutputError

log = logging.getLogger(__name__)

DATA_NAME = "part-00000.parquet"
MANIFEST_KEY = b"connector.manifest"
_JOURNAL_NAME = "publish-journal.json"
_RECOVERY_ERRORS: tuple[type[BaseException], ...] = (*STORAGE_ERRORS, ValueError, KeyError)


def partition_path(location: Location, day: date) -> str:
    """The partition prefix of one snapshot date."""
    return location.join(DATASET_DIR, f"snapshot_date={day.isoformat()}")


def _encode(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, default=str) + "\n").encode()


class ObjectStoreWriter(SnapshotWriter):
    """Streams the partition into one staged object, then publishes it by a server-side copy."""

    def __init__(
        self, location: Location, day: date, run_id: str, *, batch_rows: int = 16_384
    ) -> None:
        self.location = location
        self.fs = location.filesystem
        self.work_path = location.join(STAGING_DIR, run_id)
        self.staged_object = f"{self.work_path}/snapshot_date={day.isoformat()}/{DATA_NAME}"
        self.final = partition_path(location, day)
        # One object per partition, however many rows: a second object could be seen alone.
        self._start(day, run_id, batch_rows, file_rows=2**62)

    @property  # the messages of the shared streaming code name this
    def staged(self) -> str:  # type: ignore[override]
        return self.location.display(self.staged_object)

    def _open_file(self) -> pq.ParquetWriter:
        writer = pq.ParquetWriter(
            self.staged_object,
            FILE_SCHEMA,
            compression="zstd",
            use_dictionary=DICTIONARY_COLUMNS,
            filesystem=self.fs,
        )
        self.files.append(DATA_NAME)
        return writer

    def _close_file(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()  # completes the (multipart) upload of the staged object

    def publish(self, manifest: dict[str, Any]) -> PublishResult:
        """Finish the staged object, check it, copy it over the published one, then the
        manifest copy. Raises OutputError with the previous snapshot untouched until the copy."""
        shown = self.location.display(self.final)
        try:
            if self._pending or self._chunks or not self.files:
                self._flush()  # an empty snapshot still gets one file, so readers see the schema
            manifest = {**manifest, "rows": self.rows, "files": [DATA_NAME]}
            assert self._writer is not None
            self._writer.add_key_value_metadata({MANIFEST_KEY: _encode(manifest)})
            self._close_file()
            self._check_staged()
            journal = {"partition": self.final, "run_id": self.run_id}
            put_bytes(self.fs, f"{self.work_path}/{_JOURNAL_NAME}", _encode(journal))
            self.fs.copy_file(self.staged_object, f"{self.final}/{DATA_NAME}")
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot publish {shown}: {exc}") from exc
        # Published: from here on nothing may report failure, or the summary would lie.
        try:
            put_bytes(self.fs, f"{self.final}/{MANIFEST_NAME}", _encode(manifest))
            delete_tree(self.fs, self.work_path)
        except STORAGE_ERRORS as exc:
            log.warning("published %s, but %s; the next run repairs it", shown, exc)
        return PublishResult(shown, [DATA_NAME], self.rows)

    def _check_staged(self) -> None:
        """The staged object must be what was written: a short or foreign object never goes out."""
        metadata = pq.read_metadata(self.staged_object, filesystem=self.fs)
        embedded = json.loads((metadata.metadata or {}).get(MANIFEST_KEY, b"{}"))
        if metadata.num_rows != self.rows or embedded.get("run_id") != self.run_id:
            raise OutputError(
                f"staged object {self.staged} holds {metadata.num_rows} rows of run "
                f"{embedded.get('run_id')}, expected {self.rows} of {self.run_id}"
            )

    def discard(self) -> None:
        """Drop everything staged; the published partition is untouched."""
        if self._writer is not None:
            with contextlib.suppress(*STORAGE_ERRORS):
                self._writer.close()  # completes a partial object, but only in staging
            self._writer = None
        try:
            delete_tree(self.fs, self.work_path)
        except STORAGE_ERRORS as exc:
            log.warning("could not remove staging %s: %s", self.staged, exc)


def read_footer_manifest(filesystem: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    """The manifest embedded in a data object's footer; None when it has none or is missing."""
    try:
        metadata = pq.read_metadata(path, filesystem=filesystem)
    except FileNotFoundError:
        return None
    raw = (metadata.metadata or {}).get(MANIFEST_KEY)
    if raw is None:
        return None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise OutputError(f"the manifest in the footer of {path} is not JSON: {exc}") from exc
    return manifest if isinstance(manifest, dict) else None


def _repair_manifest(location: Location, partition: str) -> str | None:
    """Rewrite `_manifest.json` from the data object's footer when a kill left it behind."""
    footer = read_footer_manifest(location.filesystem, f"{partition}/{DATA_NAME}")
    if footer is None:
        return None
    raw = read_bytes(location.filesystem, f"{partition}/{MANIFEST_NAME}")
    try:
        current = json.loads(raw) if raw is not None else None
    except ValueError:
        current = None
    if isinstance(current, dict) and current.get("run_id") == footer.get("run_id"):
        return None
    put_bytes(location.filesystem, f"{partition}/{MANIFEST_NAME}", _encode(footer))
    return f"rewrote {location.display(partition)}/{MANIFEST_NAME} from its data object"


def recover_object_staging(location: Location) -> list[str]:
    """Finish or discard what interrupted runs left in `_staging/` (call under the lock).

    Staged objects were never visible to readers: they are deleted. A journal means the run got
    as far as the copy: the partition's `_manifest.json` is brought in line with its data object.
    """
    actions: list[str] = []
    try:
        for info in list_entries(location.filesystem, location.join(STAGING_DIR)):
            if info.type != pafs.FileType.Directory:
                continue
            raw = read_bytes(location.filesystem, f"{info.path}/{_JOURNAL_NAME}")
            if raw is not None:
                repaired = _repair_manifest(location, json.loads(raw)["partition"])
                actions += [repaired] if repaired else []
            delete_tree(location.filesystem, info.path)
            actions.append(f"removed leftover staging {info.base_name}")
    except _RECOVERY_ERRORS as exc:
        raise OutputError(
            f"cannot clean up {location.display(location.join(STAGING_DIR))}: {exc}"
        ) from exc
    return actions
