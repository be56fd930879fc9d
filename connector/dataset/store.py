"""The Store: the one interface through which the connector writes and reads a dataset.

Every protocol that touches the output (the publish of a day, shard staging, held days, run
records, `_rejected/`, locks, the reader) is written once, against this interface; a store is
either a local directory (`LocalStore`) or an object-storage prefix (`ObjectStore`, `s3://`).
`connector.dataset.locate.open_store(uri, storage_options)` picks one.

Paths are relative to the dataset root, '/'-separated (`model_versions/snapshot_date=...`), on
both stores. What each operation promises is what the publish protocol needs, and both
implementations keep it:

- `put`: a small object appears whole or not at all (local: a unique temporary file, fsynced,
  renamed over the target; object storage: one PUT).
- `open_sink`: a streaming write of a new data file that appears at its name only when
  committed, whole (local: a temporary file renamed at commit; object storage: a multipart
  upload that completes at commit). An aborted sink leaves nothing at its name. The name must be
  new: object storage cannot abort an upload (closing it completes a partial object, which is
  then deleted), so data files are always written under names of their own run and `move`d.
- `copy` / `move`: the target is replaced atomically by the source's content (local: a hard
  link or a copy to a temporary file, then a rename; object storage: a server-side copy); a
  reader of the target sees the old content or the new, never a mix. `move` then removes the
  source.
- `list`, `info`, `get`: never follow a link: a local symbolic link is reported as a `link`,
  and reading through one is refused (the layout is the connector's own; a planted link must
  not make it read or write elsewhere).
- `lock(name)`: one holder at a time of that name (local: an flock; object storage: a lease).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pyarrow as pa
import pyarrow.fs as pafs

from connector.errors import OutputError

Kind = Literal["file", "dir", "link", "other"]

# A small document (a record, a marker, a manifest) is read whole; this bounds what one costs.
SMALL_OBJECT_BYTES = 16 * 1024 * 1024

# Errors the filesystem layer raises for I/O problems (pyarrow maps AWS errors to OSError).
STORAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, pa.ArrowException)
# ... and with the store's own refusals: what a caller that must never fail catches.
OUTPUT_ERRORS: tuple[type[BaseException], ...] = (*STORAGE_ERRORS, OutputError)


@dataclass(frozen=True)
class Entry:
    """One entry of a listing: its name (no directory part), kind, size and modification time
    (nanoseconds since the epoch; whole seconds on object storage)."""

    name: str
    kind: Kind
    size: int | None = None
    mtime_ns: int | None = None


class Sink(Protocol):
    """An open streaming write; `stream` is a binary file object (pyarrow writes to it)."""

    @property
    def stream(self) -> Any: ...

    def commit(self) -> None:
        """Close the stream and make the file appear, whole, at its name."""

    def abort(self) -> None:
        """Close the stream; nothing appears at its name (idempotent, never raises)."""


class Lock(Protocol):
    """One holder at a time; a context manager. `check()` raises OutputError when the lock
    was lost (a lease not renewed in time): call it before publishing."""

    def __enter__(self) -> Lock: ...

    def __exit__(self, *_: object) -> None: ...

    def check(self) -> None: ...


class Store(Protocol):
    """A dataset root and the operations every protocol of the connector is written against."""

    @property
    def uri(self) -> str:
        """The root as the user gave it."""

    @property
    def is_local(self) -> bool:
        """True for a local directory (readers may hand its paths to DuckDB as they are)."""

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem that reads this store's files (Parquet readers use it)."""

    def native(self, path: str) -> str:
        """`path` in the filesystem's own syntax (an absolute path, or bucket/key)."""

    def display(self, path: str = "") -> str:
        """`path` as a person would type it (a local path, or s3://bucket/key)."""

    def put(self, path: str, data: bytes, *, mode: int = 0o666) -> None:
        """Write a small object whole (parents created); `mode` applies to a new local file."""

    def get(self, path: str, *, limit: int = SMALL_OBJECT_BYTES) -> bytes | None:
        """A small object's bytes; None when absent; OutputError when larger than `limit` or
        not a regular file (a link, a directory)."""

    def open_sink(self, path: str) -> Sink:
        """A streaming write of a new data file at `path` (parents created); OutputError when
        something is already there."""

    def list(self, path: str) -> list[Entry]:
        """The direct children of a directory, sorted by name; [] when it does not exist;
        OutputError when `path` itself is a link or not a directory."""

    def info(self, path: str) -> Entry | None:
        """The entry at `path` (never following a link), or None when absent."""

    def copy(self, source: str, target: str) -> None:
        """Replace `target` atomically with the content of the file `source`."""

    def move(self, source: str, target: str) -> None:
        """`copy`, then remove `source`."""

    def delete(self, path: str) -> None:
        """Remove one file (a link itself, never what it points at); quiet when absent."""

    def delete_tree(self, path: str) -> None:
        """Remove a directory and everything under it, never following a link; quiet when
        absent."""

    def lock(self, name: str, run_id: str) -> Lock:
        """The lock called `name` (a path under the root) for the run `run_id`."""
