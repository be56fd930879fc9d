"""One run at a time on object storage, where there is no flock: lease objects, write-then-list.

A run writes its own marker `<root>/_locks/<run_id>.json` (pid, host, start, lease length), then
lists `_locks/`. It holds the lock only if it sees no other live marker; otherwise it deletes its
own and is refused. S3 lists are strongly consistent after a write, so of two runs starting at
once at least one sees the other: at most one proceeds (both may be refused; neither corrupts).

A marker is live while it is renewed: the holder rewrites it every `lease_seconds / 4`, and
another run treats it as stale once its LastModified (the store's clock, compared with the
store's time on the newcomer's own marker) is more than its lease old, or at once when it names a
pid on this same host that no longer exists (a killed run). A holder that could not renew within
its lease, or whose marker was removed, refuses to publish (`check()`), so a paused process
cannot publish over a newer holder's work unnoticed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow.fs as pafs

from connector.dataset.lock import describe_holder
from connector.dataset.storage import (
    STORAGE_ERRORS,
    Location,
    list_entries,
    put_bytes,
    read_bytes,
)
from connector.errors import LockHeldError, OutputError

log = logging.getLogger(__name__)

LOCKS_DIR = "_locks"
LEASE_SECONDS = 120.0


class ObjectStoreLock:
    """An exclusive, non-blocking lease on an object-storage root; use as a context manager.

    `scope` is the folder (under the root) whose markers compete: the output's `_locks/` by
    default; another scope is an independent lock on the same root, the way a sharded run needs
    one lock per shard next to the output's (as the local `RunLock` takes a file name).
    """

    def __init__(
        self,
        location: Location,
        run_id: str,
        *,
        lease_seconds: float = LEASE_SECONDS,
        scope: str = LOCKS_DIR,
    ) -> None:
        self.location = location
        self.run_id = run_id
        self.lease_seconds = lease_seconds
        self.scope = scope.strip("/")
        self.path = location.join(self.scope, f"{run_id}.json")
        self.renewed = threading.Event()  # set after each successful renewal (tests wait on it)
        self._stop = threading.Event()
        self._last_renewal = 0.0
        self._thread: threading.Thread | None = None

    def _write_marker(self) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": self.run_id,
            "lease_seconds": self.lease_seconds,
        }
        put_bytes(self.location.filesystem, self.path, json.dumps(holder).encode())
        self._last_renewal = time.monotonic()

    def acquire(self) -> ObjectStoreLock:
        """Take the lease or raise LockHeldError naming the live holder."""
        fs = self.location.filesystem
        try:
            self._write_marker()
            markers = list_entries(fs, self.location.join(self.scope))
            # Ages compare LastModified from one listing: a HEAD rounds it to the second.
            own = next((info for info in markers if info.path == self.path), None)
            own = own or fs.get_file_info(self.path)
            live = [
                holder
                for info in markers
                if info.path != self.path and (holder := self._live_holder(info, own)) is not None
            ]
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot take the lock under {self._where()}: {exc}") from exc
        if live:
            self._delete_marker()
            raise LockHeldError(
                f"another run holds the lock on {self._where()}: {describe_holder(live[0])}"
            )
        self._thread = threading.Thread(target=self._renew, name="lock-lease", daemon=True)
        self._thread.start()
        return self

    def _live_holder(self, info: pafs.FileInfo, own: pafs.FileInfo) -> dict[str, Any] | None:
        """The holder a marker names, or None (after removing it) when it is stale."""
        raw = read_bytes(self.location.filesystem, info.path)
        if raw is None:
            return None  # released between the listing and the read
        try:
            holder = json.loads(raw)
        except ValueError:
            holder = {}
        holder = holder if isinstance(holder, dict) else {}
        lease = float(holder.get("lease_seconds", LEASE_SECONDS))
        expired = (
            info.mtime is not None
            and own.mtime is not None
            and ((own.mtime - info.mtime).total_seconds() >= lease)
        )
        if expired or _dead_here(holder):
            log.warning(
                "removing the stale lock of %s", describe_holder(holder), extra={"event": "lock"}
            )
            self.location.filesystem.delete_file(info.path)
            return None
        return holder

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self._write_marker()
            except STORAGE_ERRORS as exc:
                log.warning("could not renew the lock lease: %s", exc, extra={"event": "lock"})
                continue
            self.renewed.set()

    def check(self) -> None:
        """Raise OutputError unless this run still holds a live lease (call before publishing)."""
        overdue = time.monotonic() - self._last_renewal > self.lease_seconds
        try:
            present = self.location.filesystem.get_file_info(self.path).type == pafs.FileType.File
        except STORAGE_ERRORS:
            present = False
        if overdue or not present:
            raise OutputError(
                f"lost the lock on {self._where()} (lease not renewed in time or removed by "
                "another run); nothing was published"
            )

    def release(self) -> None:
        """Stop renewing and delete the marker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._delete_marker()

    def _delete_marker(self) -> None:
        try:
            self.location.filesystem.delete_file(self.path)
        except FileNotFoundError:
            pass
        except STORAGE_ERRORS as exc:
            log.warning("could not delete the lock marker: %s", exc, extra={"event": "lock"})

    def _where(self) -> str:
        where = self.location.display(self.location.path)
        return where if self.scope == LOCKS_DIR else f"{where} ({self.scope})"

    def __enter__(self) -> ObjectStoreLock:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def _dead_here(holder: dict[str, Any]) -> bool:
    """A marker from this host whose process is gone: its run was killed."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
