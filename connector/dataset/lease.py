"""One holder at a time on object storage, where there is no flock: lease markers, write-then-list.

A run writes its own marker `<scope>/<run_id>.json` (pid, host, start, lease length), then lists
the scope. It holds the lock only if it sees no other live marker; otherwise it deletes its own
and is refused. S3 lists are strongly consistent after a write, so of two runs starting at once at
least one sees the other: at most one proceeds (both may be refused; neither corrupts).

A marker is live while it is renewed: the holder rewrites it every `lease_seconds / 4`, and
another run treats it as stale once its LastModified (the store's clock, compared with the
store's time on the newcomer's own marker, from one listing) is more than its lease old, or at
once when it names a pid on this same host that no longer exists (a killed run). What a marker
says is untrusted (`state.parse_holder`): an unreadable one has the default lease, a lease longer
than an hour is held to an hour, a pid that cannot exist is ignored. A holder that could not renew
within its lease, or whose marker was removed, refuses to publish (`check()`), so a paused process
cannot publish over a newer holder's work unnoticed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import UTC, datetime

from connector.dataset.state import LEASE_MARKER_BYTES, Holder, parse_holder
from connector.dataset.store import OUTPUT_ERRORS, STORAGE_ERRORS, Entry, Store
from connector.errors import LockHeldError, OutputError
from connector.loggers import get_logger

log = get_logger(__name__)

LOCKS_DIR = "_locks"
LEASE_SECONDS = 120.0


class Lease:
    """An exclusive, non-blocking lease on a scope of a store; use as a context manager.

    `scope` is the folder (under the root) whose markers compete: the output's `_locks/` for
    the run lock; another scope is an independent lock on the same root (one per shard)."""

    def __init__(
        self, store: Store, run_id: str, *, lease_seconds: float = LEASE_SECONDS, scope: str
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.lease_seconds = lease_seconds
        self.scope = scope.strip("/")
        self.path = f"{self.scope}/{run_id}.json"
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
        self.store.put(self.path, json.dumps(holder).encode())
        self._last_renewal = time.monotonic()

    def acquire(self) -> Lease:
        """Take the lease or raise LockHeldError naming the live holder."""
        try:
            self._write_marker()
            markers = self.store.list(self.scope)
            # Ages compare LastModified from one listing: a HEAD rounds it to the second.
            name = self.path.rsplit("/", 1)[-1]
            own = next((entry for entry in markers if entry.name == name), None)
            own = own or self.store.info(self.path)
            live = [
                holder
                for entry in markers
                if entry.name != name and (holder := self._live_holder(entry, own)) is not None
            ]
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot take the lock under {self._where()}: {exc}") from exc
        if live:
            self._delete_marker()
            raise LockHeldError(
                f"another run holds the lock on {self._where()}: {live[0].describe()}"
            )
        self._thread = threading.Thread(target=self._renew, name="lock-lease", daemon=True)
        self._thread.start()
        return self

    def _live_holder(self, entry: Entry, own: Entry | None) -> Holder | None:
        """The holder a marker names, or None (after removing it) when it is stale."""
        path = f"{self.scope}/{entry.name}"
        try:
            raw = self.store.get(path, limit=LEASE_MARKER_BYTES)
        except OutputError:  # not a marker of ours (too large, a directory): judged by age
            raw = b""
        if raw is None:
            return None  # released between the listing and the read
        holder = parse_holder(raw)
        expired = (
            entry.mtime_ns is not None
            and own is not None
            and own.mtime_ns is not None
            and (own.mtime_ns - entry.mtime_ns) / 1e9 >= holder.lease
        )
        if expired or _dead_here(holder):
            log.warning("removing the stale lock of %s", holder.describe(), extra={"event": "lock"})
            if entry.kind == "dir":
                self.store.delete_tree(path)
            else:
                self.store.delete(path)
            return None
        return holder

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                self._write_marker()
            except OUTPUT_ERRORS as exc:
                log.warning("could not renew the lock lease: %s", exc, extra={"event": "lock"})
                continue
            self.renewed.set()

    def check(self) -> None:
        """Raise OutputError unless this run still holds a live lease (call before publishing)."""
        overdue = time.monotonic() - self._last_renewal > self.lease_seconds
        try:
            entry = self.store.info(self.path)
        except OUTPUT_ERRORS:
            entry = None
        if overdue or entry is None or entry.kind != "file":
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
            self.store.delete(self.path)
        except OUTPUT_ERRORS as exc:
            log.warning("could not delete the lock marker: %s", exc, extra={"event": "lock"})

    def _where(self) -> str:
        where = self.store.display()
        return where if self.scope == LOCKS_DIR else f"{where} ({self.scope})"

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *_: object) -> None:
        self.release()


def _dead_here(holder: Holder) -> bool:
    """A marker from this host whose process is gone: its run was killed. The pid was
    validated (1..MAX_PID), so kill() can only ever probe that one process."""
    if holder.host != socket.gethostname() or holder.pid is None:
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False
