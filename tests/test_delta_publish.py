"""Publishing one day into a Delta table: the commit, what a kill leaves, two writers at once.

The day is staged exactly as for Parquet (`partition.open_day_writer`, checked); the publish is
one delta-rs commit. Scenarios that differ only by storage run on both stores; the exact
interleaving of two commits is forced on S3, where the test server can hold a request."""

from __future__ import annotations

import json
import threading
from datetime import date, timedelta
from typing import Any

import pytest
from delta_tables import commit, commit_actions, deltalake_counts, open_delta
from stores import DAY, tree, version_rows

from connector.dataset import delta, partition
from connector.dataset.layout import partition_path, staging_path
from connector.dataset.locate import open_store
from connector.dataset.reader import data_files, read_manifest, snapshot_dates
from connector.dataset.store import Store
from connector.errors import OutputError

PARTITION = partition_path(DAY)
MANIFEST = f"_manifests/{DAY.isoformat()}.json"
DAY_TWO = DAY + timedelta(days=1)


def stage(store: Store, run_id: str, count: int, *, start: int = 0) -> dict[str, Any]:
    """Stage `count` rows (counts start..) as run `run_id`'s day; returns its manifest."""
    writer = partition.open_day_writer(store, run_id, batch_rows=10)
    for first in range(0, count, 7):
        writer.add_rows(version_rows(min(7, count - first), start=start + first))
    writer.close(footer={"run_id": run_id})
    partition.check_staged(store, run_id, writer.rows)
    return {"run_id": run_id, "rows": writer.rows}


def publish(store: Store, run_id: str, count: int, day: date = DAY, **kw: Any) -> Any:
    manifest = stage(store, run_id, count, **kw)
    return partition.publish_day(store, day, run_id, manifest, table_format="delta")


def rows_of(store: Store, day: date, version: int | None = None) -> list[str]:
    return sorted(row[3] for row in deltalake_counts(store, version) if row[0] == day)


def journal(store: Store, run_id: str, manifest: dict[str, Any]) -> None:
    document = {"format": "delta", "partition": PARTITION, "run_id": run_id, "manifest": manifest}
    store.put(f"{staging_path(run_id)}/{partition.JOURNAL_NAME}", json.dumps(document).encode())


def test_a_republish_is_one_commit_that_replaces_the_day(store: Store) -> None:
    publish(store, "run-old", 30)
    publish(store, "run-two", 4, DAY_TWO)
    result = publish(store, "run-new", 5)
    assert result.rows == 5 and result.partition == store.display(PARTITION)
    assert rows_of(store, DAY) == [f"1.0.{i}" for i in range(5)]
    assert len(rows_of(store, DAY_TWO)) == 4
    assert open_delta(store).version() == 2
    assert [f.path.rsplit("/", 1)[-1] for f in data_files(store, [DAY])] == result.files
    assert read_manifest(store, DAY) == {
        "run_id": "run-new",
        "rows": 5,
        "files": result.files,
        "delta_version": 2,
    }
    assert commit(store, 2)["connector.manifest"] == {"run_id": "run-new", "rows": 5}
    assert {"txn": {"appId": delta.app_id("run-new"), "version": 1}} in commit_actions(store, 2)
    assert tree(store, "_staging") == {}


def test_an_empty_day_is_a_published_snapshot(store: Store) -> None:
    publish(store, "run-full", 3)
    publish(store, "run-empty", 0)
    assert rows_of(store, DAY) == []
    assert data_files(store, [DAY]) == []
    assert snapshot_dates(store) == [DAY]  # the day is published, with no rows
    assert read_manifest(store, DAY)["rows"] == 0  # type: ignore[index]


def test_a_kill_before_the_commit_leaves_the_previous_version(store: Store) -> None:
    publish(store, "run-old", 3)
    journal(store, "run-new", stage(store, "run-new", 7))  # then killed before the commit
    assert partition.recover(store) == ["removed leftover staging run-new"]
    assert open_delta(store).version() == 0
    assert read_manifest(store, DAY)["run_id"] == "run-old"  # type: ignore[index]


def test_a_kill_between_the_commit_and_the_manifest_is_repaired(store: Store) -> None:
    publish(store, "run-old", 3)
    manifest = stage(store, "run-new", 7)
    journal(store, "run-new", manifest)
    delta.replace_day(store, DAY, partition.staged_file("run-new"), manifest)  # then killed
    stale = json.loads(store.get(MANIFEST) or b"{}")
    assert stale["run_id"] == "run-old"
    assert read_manifest(store, DAY) == manifest  # the run whose commit landed
    actions = partition.recover(store)
    assert any("rewrote" in action for action in actions)
    assert json.loads(store.get(MANIFEST) or b"{}") == manifest
    assert tree(store, "_staging") == {}


def test_a_log_that_is_not_a_directory_is_refused(store: Store) -> None:
    store.put("model_versions/_delta_log", b"not a log")
    with pytest.raises(OutputError, match=r"_delta_log is a file, not the log directory"):
        snapshot_dates(store)


@pytest.mark.parametrize("days", [(DAY, DAY_TWO), (DAY, DAY), (DAY_TWO, DAY_TWO)])
def test_two_commits_at_once_of_different_days_both_land_of_one_day_one_wins(
    s3_server: Any, s3_bucket: str, days: tuple[date, date]
) -> None:
    """Writer A reads the table, writes its data, and its commit (a conditional PUT of the next
    log entry) is held until writer B has committed: then A's commit meets B's."""
    store = open_store(f"s3://{s3_bucket}/lake")
    publish(store, "run-0", 2)  # DAY exists before; DAY_TWO is new
    for run in ("run-a", "run-b"):
        stage(store, run, 3 if run == "run-a" else 5, start=100 if run == "run-a" else 200)
    gate = s3_server.hold(
        lambda env: (
            env["REQUEST_METHOD"] == "PUT"
            and "/_delta_log/0000" in env["PATH_INFO"]
            and env.get("HTTP_IF_NONE_MATCH") == "*"
        )  # a conditional write: put-if-absent
    )
    outcome: dict[str, Any] = {}

    def writer_a() -> None:
        try:
            outcome["a"] = partition.publish_day(
                store, days[0], "run-a", {"run_id": "run-a", "rows": 3}
            )
        except OutputError as exc:
            outcome["a"] = exc

    thread = threading.Thread(target=writer_a)
    thread.start()
    assert gate.arrived.wait(60), "writer A never committed"
    partition.publish_day(store, days[1], "run-b", {"run_id": "run-b", "rows": 5})
    gate.release()
    thread.join(60)

    table = open_delta(store)
    b_rows = [f"1.0.{i}" for i in range(200, 205)]
    if days[0] != days[1]:
        assert not isinstance(outcome["a"], Exception)
        assert rows_of(store, days[0]) == [f"1.0.{i}" for i in range(100, 103)]
        assert rows_of(store, days[1]) == b_rows
        assert table.version() == 2  # A's commit went in after B's, as the next version
    else:  # one day: B's commit won, A's failed whole and named the conflict
        assert isinstance(outcome["a"], OutputError)
        assert "another writer committed to" in str(outcome["a"])
        assert rows_of(store, days[0]) == b_rows
        assert table.version() == 1
        assert read_manifest(store, days[0])["run_id"] == "run-b"  # type: ignore[index]
