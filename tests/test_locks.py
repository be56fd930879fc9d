"""One holder at a time, on both stores, and what a lock's holder says is never trusted: an
flock locally, a lease of write-then-list markers on object storage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stores import tree

from connector.dataset.layout import LOCK_NAME
from connector.dataset.lease import LOCKS_DIR, Lease
from connector.dataset.localstore import LocalStore
from connector.dataset.state import MAX_LEASE_SECONDS, Holder, parse_holder
from connector.dataset.store import Store
from connector.errors import LockHeldError, OutputError

SHARD_LOCK = "_shards/2026-01-02/1-of-2.lock"


def test_a_lock_is_exclusive_names_its_holder_and_is_free_once_released(store: Store) -> None:
    with store.lock(LOCK_NAME, "run-holder"):
        with pytest.raises(LockHeldError, match=r"run run-holder\)") as refused:
            store.lock(LOCK_NAME, "run-second").__enter__()
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(refused.value)
    with store.lock(LOCK_NAME, "run-third"):  # released: free again
        pass


def test_locks_of_other_names_are_independent(store: Store) -> None:
    with store.lock(SHARD_LOCK, "run-shard-1"):
        with pytest.raises(LockHeldError, match="1-of-2") as refused:
            store.lock(SHARD_LOCK, "run-shard-1-again").__enter__()
        assert "run run-shard-1" in str(refused.value)
        with store.lock("_shards/2026-01-02/2-of-2.lock", "run-shard-2"):
            with store.lock(LOCK_NAME, "run-output"):
                pass


def test_a_lock_held_by_another_process_names_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from connector.dataset.localstore import LocalStore; "
            f"lock = LocalStore({str(tmp_path)!r}).lock('_connector.lock', 'run-holder'); "
            "lock.acquire(); print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(LockHeldError, match=f"pid {holder.pid} on host .*run-holder"):
            LocalStore(tmp_path).lock(LOCK_NAME, "run-second").__enter__()
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
    with LocalStore(tmp_path).lock(LOCK_NAME, "run-third"):  # the kernel dropped it
        pass


@pytest.mark.parametrize(
    "content",
    ['{"pid": 999999, "host": "gone"}', "not json at all", '{"pid": -1}', "\x00\xff" * 10_000],
)
def test_a_lock_file_left_by_a_dead_or_foreign_process_does_not_block(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / LOCK_NAME).write_text(content, errors="surrogateescape")
    with LocalStore(tmp_path).lock(LOCK_NAME, "run-new"):
        recorded = json.loads((tmp_path / LOCK_NAME).read_text())
        assert recorded["pid"] == os.getpid() and recorded["run_id"] == "run-new"


@pytest.mark.parametrize(
    ("raw", "described"),
    [
        (None, "holder unknown"),
        ("{", "holder unknown"),
        ('["a list"]', "holder unknown"),
        ('{"pid": 0, "host": "h"}', "pid ? on host h"),  # 0 would probe a process group
        ('{"pid": -1, "host": "h"}', "pid ? on host h"),  # -1: every process
        ('{"pid": 1e400, "run_id": "r"}', "run r"),
        (f'{{"pid": {2**70}, "host": "h"}}', "pid ? on host h"),
        ('{"pid": 12, "host": "' + "x" * 10_000 + '"}', "pid 12 on host ?"),
        ('{"pid": true, "run_id": "r"}', "pid ? on host ?"),
    ],
)
def test_a_holder_is_validated_and_bounded(raw: str | None, described: str) -> None:
    holder = parse_holder(raw)
    assert described in holder.describe()
    assert holder.pid is None or 1 <= holder.pid <= 4_194_304


@pytest.mark.parametrize(
    ("lease", "honoured"),
    [(None, 120.0), (0, 0.0), (30, 30.0), (10 * 365 * 86400, MAX_LEASE_SECONDS)],
)
def test_a_lease_length_is_bounded(lease: float | None, honoured: float) -> None:
    assert Holder(lease_seconds=lease).lease == honoured


# --- leases on object storage --------------------------------------------------------------


@pytest.fixture
def s3_store(s3_bucket: str) -> Store:
    from connector.dataset.locate import open_store

    return open_store(f"s3://{s3_bucket}/lake")


def plant_marker(store: Store, run_id: str, document: Any) -> None:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    store.put(f"{LOCKS_DIR}/{run_id}.json", raw)


def test_a_refused_run_leaves_only_the_holders_marker(s3_store: Store) -> None:
    with s3_store.lock(LOCK_NAME, "run-holder"):
        with pytest.raises(LockHeldError):
            s3_store.lock(LOCK_NAME, "run-second").__enter__()
        assert list(tree(s3_store, LOCKS_DIR)) == [f"{LOCKS_DIR}/run-holder.json"]
    assert tree(s3_store) == {}


def test_a_killed_holder_on_this_host_or_an_expired_lease_is_taken_over(s3_store: Store) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    here = socket.gethostname()
    plant_marker(
        s3_store, "run-killed", {"pid": int(dead.stdout), "host": here, "lease_seconds": 3600}
    )
    plant_marker(s3_store, "run-elsewhere", {"pid": 1, "host": "other-host", "lease_seconds": 0})
    with s3_store.lock(LOCK_NAME, "run-new"):
        assert list(tree(s3_store, LOCKS_DIR)) == [f"{LOCKS_DIR}/run-new.json"]


@pytest.mark.parametrize(
    "marker",
    [
        {"pid": 1, "host": "other-host", "lease_seconds": 3600},
        {"pid": 2**70, "host": socket.gethostname(), "lease_seconds": 3600},  # no such pid
        {"pid": -1, "host": socket.gethostname()},  # never probes process group -1
        b"\xff garbage, not a marker",
    ],
)
def test_a_live_or_unreadable_marker_is_respected_until_its_lease_ends(
    s3_store: Store, marker: Any
) -> None:
    plant_marker(s3_store, "run-other", marker)
    with pytest.raises(LockHeldError, match="another run holds the lock"):
        s3_store.lock(LOCK_NAME, "run-new").__enter__()


def test_a_lost_lease_refuses_to_publish_and_renewal_keeps_it(s3_store: Store) -> None:
    lock = Lease(s3_store, "run-a", lease_seconds=0.2, scope=LOCKS_DIR).acquire()
    try:
        assert lock.renewed.wait(30)  # the lease thread rewrote the marker
        lock.check()
        s3_store.delete(lock.path)  # another run judged it stale
        with pytest.raises(OutputError, match="lost the lock"):
            lock.check()
    finally:
        lock.release()
