"""Publishing one day on any store: one data file, replaced atomically, a journal for the one
step a kill can leave half done, and an earlier version's local layout replaced safely."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from stores import DAY, parquet_rows, tree, version_rows

from connector.dataset import legacy, partition
from connector.dataset.datafile import DataFileWriter, read_footer
from connector.dataset.layout import DATA_NAME, MANIFEST_NAME, partition_path, staging_path
from connector.dataset.localstore import LocalStore
from connector.dataset.schema import FILE_SCHEMA
from connector.dataset.store import Store
from connector.errors import OutputError

PARTITION = partition_path(DAY)


def stage(store: Store, run_id: str, count: int, *, batch_rows: int = 10) -> dict[str, Any]:
    """Stage `count` rows as run `run_id`'s day file; returns its manifest."""
    writer = partition.open_day_writer(store, run_id, batch_rows=batch_rows)
    for start in range(0, count, 7):
        writer.add_rows(version_rows(min(7, count - start), start=start))
    writer.close(footer={"run_id": run_id})
    partition.check_staged(store, run_id, writer.rows)
    return {"run_id": run_id, "rows": writer.rows}


def publish(store: Store, run_id: str, count: int) -> partition.PublishResult:
    return partition.publish_day(store, DAY, run_id, stage(store, run_id, count))


def manifest(store: Store) -> Any:
    raw = store.get(f"{PARTITION}/{MANIFEST_NAME}")
    return None if raw is None else json.loads(raw)


def test_a_day_is_one_data_file_with_its_manifest_in_the_footer(store: Store) -> None:
    result = publish(store, "run-a", 54)
    assert result.rows == 54 and result.files == [DATA_NAME]
    assert sorted(tree(store, PARTITION)) == [
        f"{PARTITION}/_manifest.json",
        f"{PARTITION}/{DATA_NAME}",
    ]
    table = parquet_rows(store, f"{PARTITION}/{DATA_NAME}")
    assert table.num_rows == 54
    assert table.schema.remove_metadata().equals(FILE_SCHEMA.remove_metadata())
    assert manifest(store) == {"run_id": "run-a", "rows": 54, "files": [DATA_NAME]}
    assert read_footer(store, f"{PARTITION}/{DATA_NAME}") == {"run_id": "run-a", "rows": 54}
    assert tree(store, "_staging") == {}


def test_an_empty_day_still_has_a_schema_file(store: Store) -> None:
    publish(store, "run-empty", 0)
    table = parquet_rows(store, f"{PARTITION}/{DATA_NAME}")
    assert table.num_rows == 0 and table.schema.names == FILE_SCHEMA.names


def test_a_republish_replaces_the_day_whole(store: Store) -> None:
    publish(store, "run-old", 30)
    publish(store, "run-new", 5)
    assert sorted(tree(store, PARTITION)) == [
        f"{PARTITION}/_manifest.json",
        f"{PARTITION}/{DATA_NAME}",
    ]
    assert parquet_rows(store, f"{PARTITION}/{DATA_NAME}").num_rows == 5
    assert partition.read_manifest(store, DAY) == manifest(store)
    assert manifest(store)["run_id"] == "run-new"


def test_a_staged_file_that_is_not_this_runs_is_never_published(store: Store) -> None:
    publish(store, "run-old", 3)
    stage(store, "run-foreign", 4)
    with pytest.raises(OutputError, match="holds 4 rows of run run-foreign, expected 4 of run-x"):
        store.move(partition.staged_file("run-foreign"), partition.staged_file("run-x"))
        partition.check_staged(store, "run-x", 4)
    assert manifest(store)["run_id"] == "run-old"


def test_a_failed_swap_leaves_the_published_day_as_it_was(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(store, "run-old", 3)
    before = tree(store, PARTITION)
    with monkeypatch.context() as patch:
        patch.setattr(store, "move", _failing("No space left on device"))
        with pytest.raises(OutputError, match="No space left on device"):
            publish(store, "run-new", 7)
    assert tree(store, PARTITION) == before
    assert partition.recover(store) == ["removed leftover staging run-new"]
    assert tree(store, PARTITION) == before


def _failing(message: str) -> Any:
    def fail(*_: object) -> None:
        raise OutputError(message)

    return fail


def test_a_kill_between_the_swap_and_the_manifest_is_repaired(store: Store) -> None:
    publish(store, "run-old", 3)
    stage(store, "run-new", 7)
    journal = {
        "partition": PARTITION,
        "data": DATA_NAME,
        "run_id": "run-new",
        "manifest": {"run_id": "run-new", "rows": 7, "files": [DATA_NAME]},
    }
    store.put(f"{staging_path('run-new')}/{partition.JOURNAL_NAME}", json.dumps(journal).encode())
    store.move(partition.staged_file("run-new"), f"{PARTITION}/{DATA_NAME}")  # then killed
    assert manifest(store)["run_id"] == "run-old"  # stale, but the data file's footer says
    assert partition.read_manifest(store, DAY) == {"run_id": "run-new", "rows": 7}
    actions = partition.recover(store)
    assert any("rewrote" in action for action in actions)
    assert manifest(store) == journal["manifest"]
    assert tree(store, "_staging") == {}


def test_a_kill_before_the_swap_leaves_the_previous_day(store: Store) -> None:
    publish(store, "run-old", 3)
    before = tree(store, PARTITION)
    stage(store, "run-new", 7)
    journal = {
        "partition": PARTITION,
        "data": DATA_NAME,
        "run_id": "run-new",
        "manifest": {"run_id": "run-new"},
    }
    store.put(f"{staging_path('run-new')}/{partition.JOURNAL_NAME}", json.dumps(journal).encode())
    assert partition.recover(store) == ["removed leftover staging run-new"]
    assert tree(store, PARTITION) == before


@pytest.mark.parametrize(
    "journal",
    [
        b"{not json",
        b"[]",
        b'{"partition": "/etc", "data": "x", "manifest": {}}',
        b'{"partition": "model_versions/snapshot_date=2026-03-01", "data": "../x", "manifest": {}}',
    ],
)
def test_a_journal_that_is_not_one_is_refused_naming_it(store: Store, journal: bytes) -> None:
    publish(store, "run-old", 3)
    before = tree(store, PARTITION)
    store.put(f"{staging_path('run-bad')}/{partition.JOURNAL_NAME}", journal)
    with pytest.raises(OutputError, match=r"run-bad/publish\.json"):
        partition.recover(store)
    assert tree(store, PARTITION) == before


def test_abandoned_staging_is_deleted(store: Store) -> None:
    publish(store, "run-old", 3)
    stage(store, "run-killed", 20)  # staged whole, then killed before its journal
    assert partition.recover(store) == ["removed leftover staging run-killed"]
    assert parquet_rows(store, f"{PARTITION}/{DATA_NAME}").num_rows == 3


def test_a_failure_writing_a_full_file_is_an_output_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = DataFileWriter(store, "_staging/run-full", batch_rows=10, file_rows=10)

    def no_space(*_: object) -> Any:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(store, "open_sink", no_space)
        with pytest.raises(OutputError, match="No space left on device"):
            writer.add_rows(version_rows(12))
    writer.abort()


# --- a local partition written by an earlier version --------------------------------------


def old_partition(root: Path, *names: str) -> Path:
    """A partition as the earlier local writer left it: its run's file names, a manifest."""
    directory = root / PARTITION
    directory.mkdir(parents=True)
    for index, name in enumerate(names):
        pq.write_table(_table(index + 2), directory / name)
    (directory / MANIFEST_NAME).write_text(json.dumps({"run_id": "run-v1", "files": list(names)}))
    return directory


def _table(count: int) -> Any:
    from connector.dataset.flatten import rows_to_table

    return rows_to_table(version_rows(count))


def test_an_old_single_file_partition_is_replaced_under_its_name(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    old_partition(tmp_path, "part-0123456789ab-00000.parquet")
    publish(store, "run-new", 5)
    assert sorted(p.name for p in (tmp_path / PARTITION).iterdir()) == [
        MANIFEST_NAME,
        "part-0123456789ab-00000.parquet",
    ]
    assert manifest(store)["files"] == ["part-0123456789ab-00000.parquet"]
    assert partition.read_manifest(store, DAY)["run_id"] == "run-new"  # type: ignore[index]
    assert pq.read_table(tmp_path / PARTITION).num_rows == 5


@pytest.mark.parametrize("exchange", [True, False])
def test_an_old_partition_of_several_files_is_swapped_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    store = LocalStore(tmp_path)
    old_partition(tmp_path, "part-aaaaaaaaaaaa-00000.parquet", "part-aaaaaaaaaaaa-00001.parquet")
    if not exchange:  # a kernel without renameat2(RENAME_EXCHANGE): two renames, a journal
        monkeypatch.setattr(legacy, "exchange_paths", lambda *_: False)
    publish(store, "run-new", 5)
    assert sorted(p.name for p in (tmp_path / PARTITION).iterdir()) == [MANIFEST_NAME, DATA_NAME]
    assert pq.read_table(tmp_path / PARTITION).num_rows == 5
    assert not any((tmp_path / "_staging").iterdir())


def interrupted_old_publish(root: Path, *, staged_survives: bool) -> Path:
    """The state an earlier version's run leaves when killed between its two renames."""
    final = old_partition(root, "part-aaaaaaaaaaaa-00000.parquet")  # 2 rows
    work = root / "_staging" / "run-old"
    staged = work / final.name
    staged.mkdir(parents=True)
    pq.write_table(_table(7), staged / "part-bbbbbbbbbbbb-00000.parquet")
    previous = work / "previous"
    journal = {"final": str(final), "staged": str(staged), "previous": str(previous)}
    (work / legacy.OLD_JOURNAL_NAME).write_text(json.dumps(journal))
    os.rename(final, previous)  # the first rename done, then the process died
    if not staged_survives:
        for path in staged.iterdir():
            path.unlink()
        staged.rmdir()
    return final


@pytest.mark.parametrize(("survives", "rows"), [(True, 7), (False, 2)])
def test_an_old_interrupted_publish_is_finished(tmp_path: Path, survives: bool, rows: int) -> None:
    final = interrupted_old_publish(tmp_path, staged_survives=survives)
    actions = partition.recover(LocalStore(tmp_path))
    assert any("completed interrupted publish" in action for action in actions)
    assert pq.read_table(final).num_rows == rows
    assert not any((tmp_path / "_staging").iterdir())


def test_an_old_publish_that_cannot_be_finished_keeps_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = interrupted_old_publish(tmp_path, staged_survives=True)

    def broken_rename(source: Path, target: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OutputError, match="cannot be restored"):
        partition.recover(LocalStore(tmp_path))
    monkeypatch.undo()
    assert (tmp_path / "_staging" / "run-old" / legacy.OLD_JOURNAL_NAME).exists()
    partition.recover(LocalStore(tmp_path))  # once the cause is fixed, the next run does it
    assert pq.read_table(final).num_rows == 7


def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "one").write_text("1")
    (second / "two").write_text("2")
    if not legacy.exchange_paths(first, second):
        pytest.skip("renameat2(RENAME_EXCHANGE) not supported on this filesystem")
    assert [p.name for p in first.iterdir()] == ["two"]
    assert [p.name for p in second.iterdir()] == ["one"]


def test_two_unlocked_publishes_of_one_day_leave_one_complete_file(store: Store) -> None:
    """Even without the lock (a lease lost to a paused process), each publish replaces the one
    data file atomically: the day holds one complete file whose footer is its own."""
    staged = {run: stage(store, run, count) for run, count in (("run-1", 50), ("run-2", 100))}
    for run, manifest_of_run in staged.items():
        partition.publish_day(store, DAY, run, manifest_of_run)
    assert sorted(tree(store, PARTITION)) == [
        f"{PARTITION}/_manifest.json",
        f"{PARTITION}/{DATA_NAME}",
    ]
    assert partition.read_manifest(store, DAY) == {**staged["run-2"], "files": [DATA_NAME]}
    assert read_footer(store, f"{PARTITION}/{DATA_NAME}") == {"run_id": "run-2", "rows": 100}
    assert parquet_rows(store, f"{PARTITION}/{DATA_NAME}").num_rows == 100
