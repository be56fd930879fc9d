"""The publish checks' measuring half on DuckDB, over real Parquet on each store (a local
directory and an S3 bucket): what it measures of a staged day against the previous partition."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import pytest

from connector.checks.measure import check_day, measure
from connector.checks.verdicts import Absent
from connector.config import ChecksSettings
from connector.dataset import partition
from connector.dataset.datafile import DataFileWriter
from connector.dataset.layout import DATA_NAME, partition_path
from connector.dataset.store import Store
from connector.errors import OutputError

DAY1, DAY2, DAY3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)


def rows(org: str, model: str, counts: Sequence[int | None]) -> list[dict[str, Any]]:
    """One row per count, newest first (the first is `latest`)."""
    return [
        {
            "extracted_at": 0,
            "org": org,
            "model": model,
            "model_name": f"{org}/{model}",
            "version": f"1.0.{len(counts) - i}",
            "version_rank": i + 1,
            "is_latest": i == 0,
            "download_count": count,
        }
        for i, count in enumerate(counts)
    ]


def publish(store: Store, day: date, data: list[dict[str, Any]]) -> None:
    run = f"run-{day.isoformat()}"
    writer = partition.open_day_writer(store, run, batch_rows=100)
    writer.add_rows(data)
    writer.close(footer={"run_id": run})
    partition.publish_day(store, day, run, {"run_id": run, "rows": writer.rows})


def stage(store: Store, data: list[dict[str, Any]], name: str = "x") -> list[str]:
    """The day's rows as staged parts: one file per 50 rows."""
    writer = DataFileWriter(store, f"_shards/{name}", batch_rows=100, file_rows=50)
    writer.add_rows(data)
    return [f"_shards/{name}/{file}" for file in writer.close()]


def everything(org: str, model: str) -> bool:
    return True


BEFORE = rows("acme", "a", [100, 90, 80, 70]) + rows("acme", "b", [5, 4]) + rows("beta", "c", [9])


def test_a_day_is_measured_against_the_last_published_day_before_it(store: Store) -> None:
    publish(store, DAY1, rows("acme", "a", [1]))  # older: not the one compared with
    publish(store, DAY2, BEFORE)
    later = date(2026, 3, 9)
    publish(store, later, rows("zeta", "z", [1]))  # after the day: never the previous one
    measured = measure(store, DAY3, stage(store, rows("acme", "a", [1])), [], everything)
    assert (measured.previous_day, measured.previous_rows, measured.previous_models) == (
        DAY2,
        7,
        3,
    )


def test_counts_rows_models_and_versions_are_measured(store: Store) -> None:
    publish(store, DAY1, BEFORE)
    # a: one count reset to 0, one lost; b: same; beta/c gone (the config still covers it)
    now = rows("acme", "a", [101, 91, 0, None]) + rows("acme", "b", [6, 4])
    measured = measure(store, DAY2, stage(store, now), [("acme", "a"), ("acme", "b")], everything)
    assert (measured.rows, measured.targets, measured.duplicates) == (6, 2, 0)
    assert (measured.previous_day, measured.previous_rows, measured.previous_models) == (
        DAY1,
        7,
        3,
    )
    assert measured.versions_in_both == 6
    assert (measured.counts_decreased, measured.decreased_examples) == (
        1,
        ("acme/a@1.0.2: 80 -> 0",),
    )
    assert (measured.counts_known_before, measured.counts_lost) == (6, 1)
    assert measured.lost_examples == ("acme/a@1.0.1: 70 -> null",)
    assert measured.not_listed == Absent(1, ("beta/c",), ("beta",))
    assert measured.dropped_by_config == Absent()
    assert measured.without_rows == Absent()
    assert measured.replaced_rows == 0


def test_absent_models_are_split_by_why_they_are_absent(store: Store) -> None:
    publish(store, DAY1, BEFORE)
    now = rows("acme", "a", [100, 90, 80, 70])

    def covers(org: str, model: str) -> bool:
        return org == "acme"  # beta is no longer in the config

    # acme/b was targeted (it failed, or has no versions now); beta/c the config dropped
    measured = measure(store, DAY2, stage(store, now), [("acme", "a"), ("acme", "b")], covers)
    assert measured.without_rows == Absent(1, ("acme/b",))
    assert measured.dropped_by_config == Absent(1, ("beta/c",), ("beta",))
    assert measured.not_listed == Absent()


def test_a_count_that_stopped_being_latest_is_not_lost(store: Store) -> None:
    """A plain-string listing without `version_detail` gives a count to `latest` only: when a
    new version is released, the old latest's count turning null is not an incident."""
    publish(store, DAY1, rows("acme", "a", [100, None]))
    now = rows("acme", "a", [5, None, None])  # 1.0.3 released; 1.0.2 no longer latest
    measured = measure(store, DAY2, stage(store, now), [("acme", "a")], everything)
    assert (measured.counts_known_before, measured.counts_lost) == (0, 0)


def test_duplicates_and_the_partition_a_rerun_replaces_are_measured(store: Store) -> None:
    publish(store, DAY1, BEFORE)
    twice = rows("acme", "a", [1, 2]) * 2
    measured = measure(store, DAY1, stage(store, twice), [("acme", "a")], everything)
    assert measured.previous_day is None  # only days before count as previous
    assert measured.replaced_rows == 7
    assert (measured.rows, measured.duplicates) == (4, 2)
    assert measured.duplicate_examples == ("acme/a@1.0.1", "acme/a@1.0.2")


def test_examples_are_bounded_and_counts_exact(store: Store) -> None:
    before = [row for m in range(30) for row in rows("acme", f"m{m:02d}", [10] * 4)]
    publish(store, DAY1, before)
    now = [row for m in range(30) for row in rows("acme", f"m{m:02d}", [0] * 4)]
    measured = measure(store, DAY2, stage(store, now), [], everything)
    assert (measured.rows, measured.counts_decreased) == (120, 120)
    assert len(measured.decreased_examples) == 10


def test_check_day_judges_what_was_measured(store: Store) -> None:
    publish(store, DAY1, BEFORE)
    now = rows("acme", "a", [101, 91, 0, None]) + rows("acme", "b", [6, 4]) + rows("beta", "c", [9])
    checks = check_day(
        store,
        DAY2,
        stage(store, now),
        [("acme", "a"), ("acme", "b"), ("beta", "c")],
        everything,
        ChecksSettings(),
    )
    assert checks.held
    assert [r.describe() for r in checks.failing] == [
        "counts_decreased 14.29% > 1%",
        "counts_lost 14.29% > 1%",
    ]
    assert checks.document()["previous_snapshot"] == "2026-03-01"


def test_an_unreadable_previous_partition_is_named(store: Store) -> None:
    publish(store, DAY1, BEFORE)
    store.put(f"{partition_path(DAY1)}/{DATA_NAME}", b"not parquet at all")
    staged = stage(store, rows("acme", "a", [1]))
    with pytest.raises(OutputError) as caught:
        check_day(store, DAY2, staged, [], everything, ChecksSettings())
    assert "for the checks" in str(caught.value)
    assert store.display(f"{partition_path(DAY1)}/{DATA_NAME}") in str(caught.value)
    # every check that reads it switched off: the publish can go on without it
    comparing = [
        "coverage_config",
        "coverage_registry",
        "row_count",
        "counts_decreased",
        "counts_lost",
        "empty",
    ]
    checks = check_day(store, DAY2, staged, [], everything, ChecksSettings(disabled=comparing))
    assert not checks.held and checks.previous_day is None
