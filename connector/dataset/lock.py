"""One holder at a time of a lock file on a local filesystem: an `flock`.

The kernel drops an flock when its holder dies, however it dies, so a stale lock can never block
the next night's run. The file also records who holds it (pid, host, start time, run id) so a
refused run can name the holder; what it says is read back through `state.parse_holder`
(bounded, validated, never trusted). Object storage has no flock: its store takes a lease
instead (`connector.dataset.lease`).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from connector.dataset.layout import check_entry
from connector.dataset.state import parse_holder
from connector.errors import LockHeldError, OutputError

_MAX_HOLDER_BYTES = 4096


class FileLock:
    """An exclusive, non-blocking flock on `path`; use as a context manager. The directory of
    `path` must exist and have been checked by the caller (the store)."""

    def __init__(self, path: Path, run_id: str, *, what: str) -> None:
        self.path = path
        self.what = what  # named in the refusal: the output, or one shard of it
        self.run_id = run_id
        self._handle: IO[str] | None = None

    def acquire(self) -> FileLock:
        """Take the lock or raise LockHeldError naming the holder."""
        check_entry(self.path, directory=False)  # a planted link or directory is refused
        try:
            # O_NOFOLLOW: a link planted here is refused, not written through; 0o644: others
            # may read who holds the lock, never change it.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            handle = open(fd, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        except OSError as exc:
            raise OutputError(f"cannot create the lock file {self.path}: {exc}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = parse_holder(handle.read(_MAX_HOLDER_BYTES))
            handle.close()
            raise LockHeldError(
                f"another run holds the lock on {self.what}: {holder.describe()}"
            ) from None
        handle.seek(0)
        handle.truncate()
        json.dump(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "run_id": self.run_id,
            },
            handle,
        )
        handle.flush()
        self._handle = handle
        return self

    def check(self) -> None:
        """Nothing to check: the kernel holds an flock for as long as the process lives."""

    def release(self) -> None:
        """Drop the lock (the file stays; its contents are only informative)."""
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()
