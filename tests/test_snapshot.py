"""Staging, atomic publish, recovery of interrupted publishes, the run lock, rejected payloads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connector.dataset import writer as snapshot
from connector.dataset.flatten import Row
from connector.dataset.lock import LOCK_NAME, RunLock
from connector.dataset.rejected import MAX_BODY_BYTES, save_rejected
from connector.dataset.schema import FILE_SCHEMA
from connector.dataset.writer import (
    MANIFEST_NAME,
    SnapshotWriter,
    exchange_paths,
    partition_dir,
    recover_staging,
)
from connector.errors import LockHeldError, OutputError, PayloadError

DAY = date(2026, 3, 1)


def rows(count: int, model: str = "m") -> list[Row]:
    """`count` versions of acme/`model` by column name; the columns not named are null."""
    return [
        {
            "extracted_at": 0,
            "org": "acme",
            "model": model,
            "model_name": f"acme/{model}",
            "version": f"1.0.{i}",
            "version_rank": i + 1,
            "is_latest": i == 0,
            "download_count": i,
        }
        for i in range(count)
    ]


def publish(root: Path, run_id: str, count: int, *, exchange: bool = True) -> Path:
    writer = SnapshotWriter(root, DAY, run_id, batch_rows=10, file_rows=25, exchange=exchange)
    writer.add_rows(rows(count))
    return writer.publish({"run_id": run_id}).partition


def test_writer_streams_batches_and_rolls_files(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path, DAY, "run-a", batch_rows=10, file_rows=25)
    for _ in range(6):
        writer.add_rows(rows(9))
    result = writer.publish({"run_id": "run-a"})
    assert result.rows == 54
    assert len(result.files) == 2  # rolled over after 25+ rows
    table = pq.read_table(result.partition)
    assert table.num_rows == 54
    assert table.schema.remove_metadata().equals(FILE_SCHEMA.remove_metadata())
    manifest = json.loads((result.partition / MANIFEST_NAME).read_text())
    assert manifest == {"run_id": "run-a", "rows": 54, "files": result.files}
    assert not (tmp_path / "_staging" / "run-a").exists()


def test_empty_snapshot_still_has_a_schema_file(tmp_path: Path) -> None:
    partition = publish(tmp_path, "run-empty", 0)
    [data_file] = list(partition.glob("*.parquet"))
    table = pq.read_table(data_file)
    assert table.num_rows == 0
    assert table.schema.names == FILE_SCHEMA.names


@pytest.mark.parametrize("exchange", [True, False])
def test_republish_replaces_the_partition_whole(tmp_path: Path, exchange: bool) -> None:
    publish(tmp_path, "run-old", 30)
    partition = publish(tmp_path, "run-new", 5, exchange=exchange)
    names = sorted(p.name for p in partition.iterdir())
    assert names == [MANIFEST_NAME, "part-run-new-00000.parquet"]
    assert pq.read_table(partition).num_rows == 5
    assert not any((tmp_path / "_staging").iterdir())


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "one").write_text("1")
    (second / "two").write_text("2")
    if not exchange_paths(first, second):
        pytest.skip("renameat2(RENAME_EXCHANGE) not supported on this filesystem")
    assert [p.name for p in first.iterdir()] == ["two"]
    assert [p.name for p in second.iterdir()] == ["one"]


def interrupted_publish(root: Path, *, staged_survives: bool) -> Path:
    """Leave the state a kill between the fallback's two renames would leave."""
    old = publish(root, "run-old", 3)
    writer = SnapshotWriter(root, DAY, "run-new", exchange=False)
    writer.add_rows(rows(7))
    writer._flush()  # complete the staged files, as publish() does before swapping
    writer._close_file()
    (writer.staged / MANIFEST_NAME).write_text("{}")
    previous = writer.work_dir / "previous"
    journal = {"final": str(old), "staged": str(writer.staged), "previous": str(previous)}
    (writer.work_dir / "publish-journal.json").write_text(json.dumps(journal))
    os.rename(old, previous)  # first rename done, then the process died
    if not staged_survives:
        shutil.rmtree(writer.staged)
    return old


def test_recovery_rolls_an_interrupted_publish_forward(tmp_path: Path) -> None:
    final = interrupted_publish(tmp_path, staged_survives=True)
    assert not final.exists()
    actions = recover_staging(tmp_path)
    assert pq.read_table(final).num_rows == 7
    assert any("completed interrupted publish" in a for a in actions)
    assert not any((tmp_path / "_staging").iterdir())


def test_recovery_restores_the_previous_partition_without_a_staged_copy(tmp_path: Path) -> None:
    final = interrupted_publish(tmp_path, staged_survives=False)
    recover_staging(tmp_path)
    assert pq.read_table(final).num_rows == 3


def test_recovery_deletes_abandoned_staging(tmp_path: Path) -> None:
    publish(tmp_path, "run-old", 3)
    writer = SnapshotWriter(tmp_path, DAY, "run-killed")
    writer.add_rows(rows(20))
    writer._flush()
    actions = recover_staging(tmp_path)
    assert actions == ["removed leftover staging run-killed"]
    assert pq.read_table(partition_dir(tmp_path, DAY)).num_rows == 3


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from connector.dataset.lock import RunLock; "
            f"lock = RunLock(pathlib.Path({str(tmp_path)!r}), 'run-holder').acquire(); "
            "print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(LockHeldError) as caught:
            RunLock(tmp_path, "run-second").acquire()
        message = str(caught.value)
        assert f"pid {holder.pid} on host" in message
        assert "(run run-holder)" in message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    with RunLock(tmp_path, "run-third"):  # released when the holder exited
        pass


def test_stale_lock_file_from_a_dead_process_does_not_block(tmp_path: Path) -> None:
    stale = {"pid": 999_999, "host": "gone", "started_at": "2026-01-01T03:00:00+00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    with RunLock(tmp_path, "run-new"):
        recorded = json.loads((tmp_path / LOCK_NAME).read_text())
        assert recorded["pid"] == os.getpid()
        assert recorded["run_id"] == "run-new"


def test_rejected_payload_is_truncated_redacted_and_outside_the_dataset(tmp_path: Path) -> None:
    secret = "s3cr3t-token"
    raw = b'{"name": "' + secret.encode() + b'", "pad": "' + b"x" * (2 * MAX_BODY_BYTES) + b'"}'
    error = PayloadError(f"bad body mentioning {secret}", org="acme", model="m", status=200)
    path = save_rejected(tmp_path, DAY, error.failure(), raw, [secret])
    assert path == tmp_path / "_rejected" / "2026-03-01" / "acme" / "m.json"
    kept = json.loads(path.read_text())
    assert kept["body_truncated"] is True
    assert kept["body_bytes"] == len(raw)
    assert len(kept["body"].encode()) <= MAX_BODY_BYTES
    assert secret not in path.read_text()
    assert kept["detail"] == "bad body mentioning [REDACTED]"


def test_failed_second_rename_puts_the_published_partition_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = publish(tmp_path, "run-old", 3)
    real_rename = os.rename
    calls = []

    def rename(source: Path, target: Path) -> None:
        calls.append((source, target))
        if len(calls) == 2:  # the staged partition moving in: the disk is full
            raise OSError(28, "No space left on device")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    writer = SnapshotWriter(tmp_path, DAY, "run-new", exchange=False)
    writer.add_rows(rows(7))
    with pytest.raises(OutputError, match="No space left on device"):
        writer.publish({"run_id": "run-new"})
    writer.discard()
    monkeypatch.undo()
    assert pq.read_table(old).num_rows == 3
    assert not (tmp_path / "_staging" / "run-new").exists()


def test_discard_keeps_a_work_dir_holding_a_publish_journal(tmp_path: Path) -> None:
    final = interrupted_publish(tmp_path, staged_survives=True)
    writer = SnapshotWriter.__new__(SnapshotWriter)  # the writer of the interrupted run
    writer._writer = None
    writer.work_dir = tmp_path / "_staging" / "run-new"
    writer.staged = writer.work_dir / final.name
    writer.discard()
    assert (writer.work_dir / "publish-journal.json").exists()
    recover_staging(tmp_path)
    assert pq.read_table(final).num_rows == 7


def test_fsync_trouble_after_the_swap_still_reports_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(tmp_path, "run-old", 3)
    real_fsync_dir = snapshot.fsync_dir

    def fsync_dir(path: Path) -> None:
        if path.name == "model_versions":
            raise OSError(5, "Input/output error")
        real_fsync_dir(path)

    monkeypatch.setattr(snapshot, "fsync_dir", fsync_dir)
    partition = publish(tmp_path, "run-new", 4)
    assert pq.read_table(partition).num_rows == 4


def test_rejected_body_is_redacted_before_it_is_truncated(tmp_path: Path) -> None:
    secret = "tok-straddling-the-cut"
    raw = b"x" * (MAX_BODY_BYTES - 5) + secret.encode() + b"y" * 100
    error = PayloadError("bad", org="acme", model="m", status=200)
    kept = json.loads(save_rejected(tmp_path, DAY, error.failure(), raw, [secret]).read_text())
    assert secret[:5] not in kept["body"][-20:]
    assert kept["body"].startswith("x" * 100)


def test_a_failure_closing_a_full_file_is_an_output_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = SnapshotWriter(tmp_path, DAY, "run-full", batch_rows=10, file_rows=10)

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OutputError, match="No space left on device"):
        writer.add_rows(rows(12))  # a full file is closed (and fsynced) mid-run
    writer.discard()


def test_recovery_that_cannot_restore_keeps_everything_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = interrupted_publish(tmp_path, staged_survives=True)

    def broken_rename(source: Path, target: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OutputError, match="cannot be restored"):
        recover_staging(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "_staging" / "run-new" / "publish-journal.json").exists()
    recover_staging(tmp_path)  # once the cause is fixed, the next run completes it
    assert pq.read_table(final).num_rows == 7
