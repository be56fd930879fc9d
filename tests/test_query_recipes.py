"""The query recipes of docs/querying.md, read from the docs and run exactly as written (on
`data/` in the working directory): they take their window from the data, agree with
`connector report --days N` on datasets the connector wrote, and answer a window without rows
with an empty table instead of an error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from dataset_builders import V, write_snapshot
from helpers import (
    docs_block,
    extract_two_days,
    named_window,
    recipe_days,
    run_docs_duckdb,
    run_docs_python,
)

import connector
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
COLUMNS = ["org", "model", "download_count", "downloads_gained"]
PYTHON_RECIPES = ("pandas", "polars")


def days_of_the_recipes() -> int:
    """N of "the latest snapshot against the latest one at least N days older": one N in all."""
    days = {recipe_days(docs_block(name)) for name in ("duckdb", *PYTHON_RECIPES)}
    assert len(days) == 1, f"the recipes use different windows: {sorted(days)}"
    return days.pop()


def every_recipe(sql: str | None = None, **python: str) -> dict[str, pd.DataFrame]:
    """Each recipe's result as pandas, DuckDB also in a session whose time zone is not UTC (a
    start date means midnight UTC whatever the session's zone)."""
    results = {"duckdb": run_docs_duckdb(sql)}
    with duckdb.connect() as connection:
        connection.sql("SET TimeZone = 'America/New_York'")
        results["duckdb, New York session"] = run_docs_duckdb(sql, connection)
    for name in PYTHON_RECIPES:
        results[name] = run_docs_python(name, python.get(name))
    return results


def assert_all_equal(results: dict[str, pd.DataFrame], expected: pd.DataFrame) -> None:
    for name, result in results.items():
        assert list(result.columns) == COLUMNS, name
        assert result.values.tolist() == expected[COLUMNS].values.tolist(), name


def test_the_recipes_agree_with_the_report_on_every_awkward_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    days = days_of_the_recipes()
    end = date(2026, 3, 10)
    start = end - timedelta(days=days)
    between = start + timedelta(days=1)
    root = tmp_path / "data"
    # Older than the window's start: the recipes must not take it as the start.
    write_snapshot(root, start - timedelta(days=2), [V("acme", "a", "1.0", 1)])
    write_snapshot(
        root,
        start,
        [V("acme", "a", "1.0", 100), V("acme", "a", "0.9", 50), V("acme", "c", "1", None)],
    )
    write_snapshot(
        root,
        between,
        [V("acme", "a", "1.0", 130), V("acme", "b", "1", 1000), V("acme", "c", "1", 20)],
    )
    write_snapshot(
        root,
        end,
        [
            V("acme", "a", "1.0", 190),  # plain gain 90; 0.9 disappeared: not counted
            V("acme", "a", "2.0", 40, f"{between}T08:00:00"),  # new in the window: from 0
            V("acme", "b", "1", 1300),  # first observed after the start: 300
            V("acme", "c", "1", 25),  # unknown at the start: from 20
            # created 02:00 UTC on the start day, after its snapshot: new, from 0 (in a New
            # York session a naive comparison would put it before the start)
            V("acme", "d", "1", 60, f"{start}T02:00:00"),
            V("globex", "g", "1", 7, None),  # first observed at the end: 0
            V("globex", "h", "1", None),  # unknown at the end: left out
        ],
    )
    expected = connector.report(root, days=days, top=None)
    assert expected[["model", "downloads_gained"]].values.tolist() == [
        ["b", 300],
        ["a", 130],
        ["d", 60],
        ["c", 5],
        ["g", 0],
    ]

    monkeypatch.chdir(tmp_path)
    results = every_recipe()
    assert_all_equal(results, expected)
    # exact integers, not HUGEINT turned float64 (which loses digits above 2**53)
    duck = results["duckdb"]
    assert duck.dtypes[["download_count", "downloads_gained"]].tolist() == ["int64", "int64"]


def test_the_recipes_agree_with_the_report_on_an_extracted_dataset(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As `make demo` writes it: version strings with per-version detail, two days one day
    apart (shorter than the recipes' window, so it starts at the earliest snapshot)."""
    registry = start_simulator(orgs=2, models_per_org=3, seed=5)
    data = extract_two_days(registry, tmp_path, out_name="data")
    expected = connector.report(data, days=days_of_the_recipes(), by="model", top=None)
    assert expected["downloads_gained"].sum() > 0
    monkeypatch.chdir(tmp_path)
    assert_all_equal(every_recipe(), expected)


def test_a_window_without_rows_is_an_empty_table(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two snapshots the connector published for models with no versions, and two dates of
    one's own that hold no snapshot: every recipe answers with no rows, not an exception."""
    registry = start_simulator(orgs=1, models_per_org=2, empty_models=2)
    data = extract_two_days(registry, tmp_path, out_name="data")
    assert sorted(p.parent.name for p in data.glob("model_versions/*/*.parquet")) == [
        "snapshot_date=2026-01-01",
        "snapshot_date=2026-01-02",
    ]
    assert connector.load_snapshots(data).empty
    monkeypatch.chdir(tmp_path)
    nothing = pd.DataFrame(columns=COLUMNS)
    assert_all_equal(every_recipe(), nothing)

    outside = (date(2025, 6, 1), date(2025, 6, 8))
    edited = {name: named_window(docs_block(name), *outside) for name in PYTHON_RECIPES}
    assert_all_equal(every_recipe(named_window(docs_block("duckdb"), *outside), **edited), nothing)


def test_two_dates_of_ones_own_give_the_report_of_those_dates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit docs/querying.md describes for a window of one's choice."""
    root = tmp_path / "data"
    for offset, count in enumerate((10, 15, 40, 100)):
        write_snapshot(
            root, date(2026, 1, 1) + timedelta(days=offset), [V("acme", "a", "1", count)]
        )
    start, end = date(2026, 1, 2), date(2026, 1, 3)
    expected = connector.report(root, start=start, end=end, top=None)
    assert expected["downloads_gained"].tolist() == [25]
    monkeypatch.chdir(tmp_path)
    edited = {name: named_window(docs_block(name), start, end) for name in PYTHON_RECIPES}
    assert_all_equal(
        every_recipe(named_window(docs_block("duckdb"), start, end), **edited), expected
    )
