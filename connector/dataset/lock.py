"""One run at a time per output location.

An `flock` on `<output>/_connector.lock`: the kernel drops it when the holder dies, however it
dies, so a stale lock can never block the next night's run. The file also records who holds it
(pid, host, start time, run id) so a refused run can name the holder. Object storage has no
flock: `open_run_lock` gives a lease there instead (`connector.dataset.lease`).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from connector.dataset.layout import LOCK_NAME, check_entry, check_layout
from connector.errors import LockHeldError, OutputError

if TYPE_CHECKING:
    from connector.dataset.storage import Location


class RunLock:
    """An exclusive, non-blocking lock on an output root; use as a context manager."""

    def __init__(
        self, root: Path, run_id: str, *, name: str = LOCK_NAME, what: str | None = None
    ) -> None:
        self.path = root / name
        self.what = what or str(root)  # named in the refusal: the output, or one shard of it
        self.run_id = run_id
        self._handle: IO[str] | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise LockHeldError naming the holder."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the lock file {self.path}: {exc}") from exc
        check_layout(self.path.parent)  # before anything is opened, renamed or deleted in it
        check_entry(self.path, directory=False)  # a shard's lock is not in that layout
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
            holder = _read_holder(handle)
            handle.close()
            raise LockHeldError(
                f"another run holds the lock on {self.what}: {describe_holder(holder)}"
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

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def _read_holder(handle: IO[str]) -> dict[str, Any]:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    """'pid 123 on host h since 2026-11-29T03:00:00+00:00 (run abc)', with what is known."""
    if not holder:
        return "holder unknown"
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
        f"since {holder.get('started_at', '?')} (run {holder.get('run_id', '?')})"
    )


class OutputLock(Protocol):
    """What a run needs from its lock, wherever the output lives."""

    def __enter__(self) -> OutputLock: ...

    def __exit__(self, *_: object) -> None: ...

    def check(self) -> None:
        """Raise OutputError if the lock is no longer held (call before publishing)."""


def open_run_lock(location: Location, run_id: str) -> OutputLock:
    """An flock for a local root, a lease for object storage."""
    if location.is_local:
        return RunLock(location.local_path, run_id)
    from connector.dataset.lease import ObjectStoreLock

    return ObjectStoreLock(location, run_id)
