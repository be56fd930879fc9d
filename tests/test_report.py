"""The download report: windows, gains, the awkward cases (each with exact numbers), filters,
the DuckDB cross-check, and the `report` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from dataset_builders import D, V, daily_dataset, report_over, write_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.cli import ConnectorGroup
from connector.cli.report import report as report_command
from connector.errors import ConfigError, ExitCode, NoDataError
from connector.reporting.analytics import (
    GROUPINGS,
    REPORT_COLUMNS,
    Report,
    Window,
    compute_report,
    report,
    resolve_window,
)
from connector.reporting.window import MISSING_DAYS_LISTED

JAN = [D(f"2024-01-{day:02d}") for day in range(1, 32)]


def run(snapshots: dict[str, list[V]], by: str = "version", **window: Any) -> Report:
    """The report over these snapshots and window (days=... etc.), every group."""
    return report_over(snapshots, by=by, top=None, **window)


def row(result: Report, **keys: str) -> dict[str, Any]:
    table = result.table
    mask = pd.Series(True, index=table.index)
    for key, value in keys.items():
        mask &= table[key] == value
    assert mask.sum() == 1, f"expected one row for {keys}"
    return dict(table[mask].iloc[0])


# --- windows -------------------------------------------------------------------------------


def test_days_compares_latest_with_the_latest_snapshot_at_least_n_days_older() -> None:
    window = resolve_window(JAN[:10], days=7)
    assert (window.start, window.end, window.days) == (JAN[2], JAN[9], 7)
    assert window.snapshots == tuple(JAN[2:10])
    assert window.notes == ()
    assert resolve_window(JAN[:10]).start == JAN[8]  # default: one day


def test_days_takes_the_snapshot_before_a_missing_day_and_says_so() -> None:
    window = resolve_window([JAN[0], JAN[1], JAN[4]], days=2)
    assert (window.start, window.end, window.days) == (JAN[1], JAN[4], 3)
    assert window.missing_days == (JAN[2], JAN[3])
    assert "no snapshot on 2024-01-03: using the one before" in window.notes
    assert any("2 day(s) in the window have no snapshot" in note for note in window.notes)


def test_a_gap_of_centuries_is_counted_not_enumerated(tmp_path: Path) -> None:
    """Snapshots dated 0001-01-01 and 2026-01-01: the missing days are counted from the span,
    and only the first few are listed (enumerating all 739,000 made every report crawl)."""
    first, last = D("0001-01-01"), D("2026-01-01")
    window = resolve_window([first, D("0001-01-03"), last], start=first)
    span = (last - first).days
    assert window.missing_day_count == span + 1 - 3
    assert window.missing_days[:2] == (D("0001-01-02"), D("0001-01-04"))
    assert len(window.missing_days) == MISSING_DAYS_LISTED
    assert f"{span - 2} day(s) in the window have no snapshot (0001-01-02, 0001-01-04," in "".join(
        window.notes
    )
    write_snapshot(tmp_path, first, [V("acme", "a", "1.0", 10)])
    write_snapshot(tmp_path, last, [V("acme", "a", "1.0", 25)])
    result = compute_report(tmp_path, days=365)
    assert result.table["downloads_gained"].tolist() == [15]
    assert result.table.attrs["missing_day_count"] == span - 1
    assert len(result.table.attrs["missing_days"]) == MISSING_DAYS_LISTED
    assert result.daily["days"].tolist() == [span]


def test_days_longer_than_the_history_starts_at_the_earliest_with_a_note() -> None:
    window = resolve_window(JAN[:3], days=30)
    assert (window.start, window.end) == (JAN[0], JAN[2])
    # the snapshot it falls back to is after the day asked for: the window starts later
    assert window.notes[0] == (
        "no snapshot on or before 2023-12-04: the window starts later, at 2024-01-01"
    )


@pytest.mark.parametrize(
    ("start", "end", "notes"),
    [
        (
            "2023-12-01",
            "2024-01-06",
            ["no snapshot on 2023-12-01: the window starts later, at 2024-01-02"],
        ),
        (
            "2024-01-03",
            "2024-01-06",
            ["no snapshot on 2024-01-03: the window starts earlier, at 2024-01-02"],
        ),
        (
            "2024-01-02",
            "2024-01-07",
            ["no snapshot on 2024-01-07: the window ends earlier, at 2024-01-06"],
        ),
    ],
)
def test_window_notes_say_earlier_or_later_by_comparing_dates(
    start: str, end: str, notes: list[str]
) -> None:
    window = resolve_window([JAN[1], JAN[3], JAN[5]], start=D(start), end=D(end))
    assert [n for n in window.notes if "day(s) in the window" not in n] == notes


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-01-02", "2024-01-06", ("2024-01-02", "2024-01-06")),  # exact
        ("2024-01-03", "2024-01-07", ("2024-01-02", "2024-01-06")),  # latest on or before each
        ("2023-12-01", "2024-01-04", ("2024-01-02", "2024-01-04")),  # before everything: earliest
        ("2024-01-04", None, ("2024-01-04", "2024-01-08")),  # no end: the latest
    ],
)
def test_start_end_resolve_to_snapshots(
    start: str, end: str | None, expected: tuple[str, str]
) -> None:
    available = [JAN[1], JAN[3], JAN[5], JAN[7]]
    window = resolve_window(available, start=D(start), end=D(end) if end else None)
    assert (window.start, window.end) == (D(expected[0]), D(expected[1]))


def test_start_and_end_on_the_same_snapshot_is_a_clear_error() -> None:
    with pytest.raises(NoDataError, match=r"resolve to the same snapshot \(2024-01-04\)"):
        resolve_window([JAN[1], JAN[3], JAN[7]], start=JAN[3], end=JAN[5])
    with pytest.raises(NoDataError, match="no snapshot on or before 2024-01-01"):
        resolve_window([JAN[1], JAN[3]], start=D("2023-12-01"), end=JAN[0])


def test_a_single_snapshot_is_a_clear_message_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(NoDataError, match=r"single snapshot \(2024-01-05\).*compares two"):
        resolve_window([JAN[4]], days=1)
    write_snapshot(tmp_path, JAN[4], [V("acme", "a", "1.0", 10)])
    with pytest.raises(NoDataError, match="single snapshot"):
        report(tmp_path)
    with pytest.raises(NoDataError, match="no snapshots under"):
        report(tmp_path / "empty")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"days": 3, "start": JAN[0]}, "cannot be combined"),
        ({"days": 0}, "at least 1"),
        ({"end": JAN[3]}, "needs a start"),
        ({"start": JAN[5], "end": JAN[3]}, "is after end"),
    ],
)
def test_bad_window_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_window(JAN[:10], **options)


# --- the gains and the awkward cases ---------------------------------------------------------


def test_gain_per_version_and_model_over_a_plain_window() -> None:
    result = run(
        {
            "2024-01-01": [V("acme", "a", "1.0", 1000), V("acme", "a", "1.1", 200)],
            "2024-01-03": [V("acme", "a", "1.0", 1400), V("acme", "a", "1.1", 500)],
        },
        by="model",
        days=2,
    )
    assert result.table.to_dict("records") == [
        {
            "org": "acme",
            "model": "a",
            "download_count": 1900,
            "downloads_gained": 700,
            "gained_per_day": 350.0,
            "share_of_gained": 1.0,
            "versions": 2,
            "new_versions": 0,
            "new_version_names": "",
            "versions_from_first_observation": 0,
            "versions_count_decreased": 0,
            "versions_disappeared": 0,
            "start_snapshot": pd.Timestamp("2024-01-01"),
            "end_snapshot": pd.Timestamp("2024-01-03"),
        }
    ]
    assert result.total_gained == 700
    assert result.table.attrs["days"] == 2
    assert result.table.attrs["start_snapshot"] == JAN[0]


@pytest.mark.parametrize("created", ["2024-01-01T00:00:00", "2024-01-02T17:30:00"])
def test_a_version_released_in_the_window_counts_from_zero(created: str) -> None:
    result = run(
        {
            "2024-01-01": [V("acme", "a", "1.0", 1000)],
            "2024-01-02": [V("acme", "a", "1.0", 1010), V("acme", "a", "2.0", 40, created)],
            "2024-01-03": [V("acme", "a", "1.0", 1020), V("acme", "a", "2.0", 90, created)],
        },
        days=2,
    )
    new = row(result, version="2.0")
    assert (new["downloads_gained"], new["baseline_count"], new["is_new"]) == (90, 0, True)
    assert not new["counted_from_first_observation"]
    by_model = run(
        {
            "2024-01-01": [V("acme", "a", "1.0", 1000)],
            "2024-01-03": [V("acme", "a", "2.0", 90, created)],
        },
        by="model",
        days=2,
    )
    assert row(by_model, model="a")["new_versions"] == 1
    assert row(by_model, model="a")["new_version_names"] == "2.0"
    assert row(by_model, model="a")["downloads_gained"] == 90


def test_an_older_version_missing_from_the_start_counts_from_its_first_observation() -> None:
    """Model b failed on the start day: its version existed but was not captured."""
    result = run(
        {
            "2024-01-01": [V("acme", "a", "1.0", 100)],  # acme/b failed that day
            "2024-01-02": [V("acme", "a", "1.0", 110), V("acme", "b", "1.0", 5000)],
            "2024-01-03": [V("acme", "a", "1.0", 120), V("acme", "b", "1.0", 5300)],
        },
        days=2,
    )
    b = row(result, model="b")
    assert b["downloads_gained"] == 300  # not 5300: its earlier downloads predate the window
    assert b["baseline_count"] == 5000
    assert b["counted_from_first_observation"]
    assert not b["is_new"]
    assert b["first_observed"] == pd.Timestamp("2024-01-02")
    assert b["gained_per_day"] == 150.0  # still over the whole window
    assert result.flags["versions_from_first_observation"] == 1
    assert any("counted from their first observation" in note for note in result.notes)


def test_a_version_just_before_the_start_date_is_not_new() -> None:
    result = run(
        {
            "2024-01-01": [V("acme", "a", "1.0", 100)],
            "2024-01-02": [V("acme", "a", "2.0", 7, "2023-12-31T23:59:59")],
            "2024-01-03": [V("acme", "a", "2.0", 9, "2023-12-31T23:59:59")],
        },
        days=2,
    )
    assert row(result, version="2.0")["downloads_gained"] == 2
    assert row(result, version="2.0")["counted_from_first_observation"]


def test_a_version_without_created_at_missing_from_the_start_is_not_assumed_new() -> None:
    result = run(
        {"2024-01-01": [V("acme", "a", "1.0", 1)], "2024-01-03": [V("acme", "a", "2.0", 50, None)]},
        days=2,
    )
    assert row(result, version="2.0")["downloads_gained"] == 0  # first observed at the end
    assert row(result, version="2.0")["counted_from_first_observation"]


def test_an_unknown_start_count_is_not_a_gain_of_the_whole_total() -> None:
    result = run(
        {
            "2024-01-01": [V("acme", "a", "1.0", None)],
            "2024-01-02": [V("acme", "a", "1.0", 800)],
            "2024-01-04": [V("acme", "a", "1.0", 950)],
        },
        days=3,
    )
    version = row(result, version="1.0")
    assert (version["downloads_gained"], version["baseline_count"]) == (150, 800)
    assert version["counted_from_first_observation"]
    assert result.table.attrs["excluded_unknown_rows"] == 1


def test_a_version_that_disappears_gains_nothing_and_is_listed() -> None:
    snapshots = {
        "2024-01-01": [V("acme", "a", "1.0", 500), V("acme", "a", "0.9", 300)],
        "2024-01-02": [V("acme", "a", "1.0", 550), V("acme", "a", "0.9", 310)],
        "2024-01-03": [V("acme", "a", "1.0", 600)],
    }
    gone = row(run(snapshots, days=2), version="0.9")
    assert gone["disappeared"]
    assert gone["download_count"] is pd.NA
    assert (gone["downloads_gained"], gone["baseline_count"]) == (0, 300)
    model = row(run(snapshots, by="model", days=2), model="a")
    assert (model["download_count"], model["downloads_gained"]) == (600, 100)
    assert (model["versions"], model["versions_disappeared"]) == (1, 1)


def test_a_count_that_goes_down_never_gives_a_negative_gain() -> None:
    result = run(
        {
            "2024-01-01": [V("acme", "a", "1.0", 1000), V("acme", "b", "1.0", 100)],
            "2024-01-02": [V("acme", "a", "1.0", 900), V("acme", "b", "1.0", 80)],
            "2024-01-03": [V("acme", "a", "1.0", 950), V("acme", "b", "1.0", 130)],
        },
        days=2,
    )
    a, b = row(result, model="a"), row(result, model="b")
    assert (a["downloads_gained"], a["download_count"], a["count_decreased"]) == (0, 950, True)
    assert (b["downloads_gained"], b["count_decreased"]) == (30, True)  # dipped, then recovered
    assert result.total_gained == 30
    assert result.flags["versions_count_decreased"] == 2
    assert any("went down" in note for note in result.notes)


def test_unknown_counts_are_excluded_and_counted() -> None:
    """A plain-string version list: only the latest version carries a count."""
    result = run(
        {
            "2024-01-01": [
                V("acme", "a", "2.0", 5000),
                V("acme", "a", "1.1", None),
                V("acme", "a", "1.0", None),
            ],
            "2024-01-02": [
                V("acme", "a", "2.0", 5600),
                V("acme", "a", "1.1", None),
                V("acme", "a", "1.0", None),
            ],
        },
        days=1,
    )
    assert result.table["version"].tolist() == ["2.0"]
    assert result.total_gained == 600
    assert result.excluded_unknown_rows == 4
    attrs = result.table.attrs
    assert attrs["excluded_unknown_rows"] == 4
    assert (attrs["unknown_rows_at_start"], attrs["unknown_rows_at_end"]) == (2, 2)
    assert result.notes == ("4 row(s) with an unknown download count excluded from the gains",)


def test_a_gap_of_missing_days_divides_by_the_real_distance() -> None:
    snapshots = {
        "2024-01-01": [V("acme", "a", "1.0", 100)],
        "2024-01-02": [V("acme", "a", "1.0", 130)],
        "2024-01-05": [V("acme", "a", "1.0", 430)],
    }
    result = run(snapshots, by="model", days=3)
    assert (result.window.start, result.window.end, result.window.days) == (JAN[1], JAN[4], 3)
    assert row(result, model="a")["downloads_gained"] == 300
    assert row(result, model="a")["gained_per_day"] == 100.0
    assert result.table.attrs["missing_days"] == [JAN[2], JAN[3]]
    daily = run(snapshots, by="model", days=4).daily
    assert daily["days"].tolist() == [1, 3]
    assert daily["downloads_gained"].tolist() == [30, 300]
    assert daily["gained_per_day"].tolist() == [30.0, 100.0]


def test_sorting_ties_top_k_and_share() -> None:
    result = report_over(
        {
            "2024-01-01": [V("b", "x", "1", 0), V("a", "y", "1", 0), V("a", "x", "1", 0)],
            "2024-01-02": [V("b", "x", "1", 50), V("a", "y", "1", 50), V("a", "x", "1", 100)],
        },
        by="model",
        top=2,
    )
    assert result.table[["org", "model"]].values.tolist() == [["a", "x"], ["a", "y"]]
    assert result.table["share_of_gained"].tolist() == [0.5, 0.25]
    assert (result.total_groups, result.total_gained, result.table.attrs["top"]) == (3, 200, 2)


def test_nothing_gained_gives_zero_shares() -> None:
    result = run({"2024-01-01": [V("a", "x", "1", 7)], "2024-01-02": [V("a", "x", "1", 7)]})
    assert result.table["share_of_gained"].tolist() == [0.0]


def test_by_org_and_by_framework() -> None:
    snapshots = {
        "2024-01-01": [
            V("acme", "a", "1.0", 10, framework="onnx"),
            V("globex", "g", "1", 5, framework=None),
        ],
        "2024-01-02": [
            V("acme", "a", "1.0", 30, framework="onnx"),
            V("acme", "b", "3.1", 4, "2024-01-02T00:00:00", framework="onnx"),
            V("globex", "g", "1", 6, framework=None),
        ],
    }
    orgs = run(snapshots, by="org")
    assert orgs.table[
        ["org", "download_count", "downloads_gained", "new_version_names"]
    ].values.tolist() == [
        ["acme", 34, 24, "b@3.1"],
        ["globex", 6, 1, ""],
    ]
    frameworks = run(snapshots, by="framework")
    assert frameworks.table["framework"].tolist() == ["onnx", pd.NA]
    assert frameworks.table["new_version_names"].tolist() == ["acme/b@3.1", ""]
    assert frameworks.daily["group"].tolist() == ["onnx", "(unknown)"]


@pytest.mark.parametrize("by", GROUPINGS)
def test_every_grouping_has_its_documented_columns(by: str) -> None:
    result = run({"2024-01-01": [V("a", "x", "1", 1)], "2024-01-02": [V("a", "x", "1", 3)]}, by=by)
    assert list(result.table.columns) == REPORT_COLUMNS[by]
    assert result.table["downloads_gained"].tolist() == [2]


def test_daily_gains_sum_to_the_window_gain_for_the_top_groups(tmp_path: Path) -> None:
    daily_dataset(tmp_path, "2024-01-01", 6, models=4)
    result = compute_report(tmp_path, days=5, top=3)
    daily = result.daily
    assert daily["group"].unique().tolist() == ["acme/model-3", "acme/model-2", "acme/model-1"]
    assert len(daily) == 3 * 5
    sums = daily.groupby("group", sort=False)["downloads_gained"].sum().tolist()
    assert sums == result.table["downloads_gained"].tolist() == [2000, 1500, 1000]
    standalone = run({"2024-01-01": [V("a", "x", "1", 1)], "2024-01-02": [V("a", "x", "1", 4)]})
    assert standalone.daily[["group", "downloads_gained"]].values.tolist() == [["a/x@1", 3]]


counts = st.lists(st.one_of(st.none(), st.integers(0, 10**12)), min_size=2, max_size=6)


@settings(max_examples=20, deadline=None)
@given(histories=st.lists(counts, min_size=1, max_size=4))
def test_gains_are_never_negative_and_add_up(histories: list[list[int | None]]) -> None:
    days = max(len(h) for h in histories)
    snapshots: dict[str, list[V]] = {JAN[i].isoformat(): [] for i in range(days)}
    for n, history in enumerate(histories):
        for i, count in enumerate(history):
            snapshots[JAN[i].isoformat()].append(V("o", f"m{n}", "1", count))
    result = run(snapshots, start=JAN[0])
    assert result.window == Window(JAN[0], JAN[days - 1], tuple(JAN[:days]))
    assert (result.table["downloads_gained"] >= 0).all()
    assert result.total_gained == result.table["downloads_gained"].sum()
    for n, history in enumerate(histories):
        known = [c for c in history if c is not None]
        if len(history) == days and history[-1] is not None and known == sorted(known):
            assert row(result, model=f"m{n}")["downloads_gained"] == history[-1] - known[0]


# --- reading the dataset ---------------------------------------------------------------------


def test_filters_and_top_k_through_the_dataset(tmp_path: Path) -> None:
    daily_dataset(tmp_path, "2024-01-01", 3, models=4)
    write_snapshot(
        tmp_path, "2024-01-01", [V("globex", "model-1", "1.0", 0)], name="part-g.parquet"
    )
    write_snapshot(
        tmp_path, "2024-01-03", [V("globex", "model-1", "1.0", 9)], name="part-g.parquet"
    )

    everything = report(tmp_path, days=2, top=0)
    assert len(everything) == 5 and everything.attrs["total_gained"] == 2000 + 9
    assert report(tmp_path, days=2, top=2)["model"].tolist() == ["model-3", "model-2"]
    assert report(tmp_path, days=2, org="globex")["downloads_gained"].tolist() == [9]
    by_model = report(tmp_path, days=2, model=["model-1", "model-0"])
    assert by_model[["org", "downloads_gained"]].values.tolist() == [
        ["acme", 400],
        ["acme", 200],
        ["globex", 9],
    ]
    with pytest.raises(NoDataError, match="no rows for org initech"):
        report(tmp_path, org="initech")


def test_models_that_failed_in_the_window_runs_are_named(tmp_path: Path) -> None:
    failure = {"org": "acme", "model": "b", "status": 503, "error_type": "server_error"}
    write_snapshot(tmp_path, "2024-01-01", [V("acme", "a", "1.0", 1)], failures=[failure])
    write_snapshot(tmp_path, "2024-01-02", [V("acme", "a", "1.0", 2), V("acme", "b", "1", 5)])
    write_snapshot(tmp_path, "2024-01-03", [V("acme", "a", "1.0", 4), V("acme", "b", "1", 9)])
    (tmp_path / "model_versions" / "snapshot_date=2024-01-03" / "_manifest.json").write_text("{")

    result = compute_report(tmp_path, days=2)
    assert row(result, model="b")["downloads_gained"] == 4
    assert "1 model(s) failed in the start snapshot (2024-01-01): acme/b" in result.notes
    assert any("the end snapshot's manifest is unreadable" in note for note in result.notes)
    assert not any(
        "model(s) failed" in n for n in compute_report(tmp_path, days=2, model="a").notes
    )


# --- the command -----------------------------------------------------------------------------


def invoke(*args: str) -> Any:
    """Run `connector report` inside a group that maps errors to exit codes like the real CLI."""
    group = ConnectorGroup("connector", commands=[report_command])
    return CliRunner().invoke(group, ["report", *args])


def test_command_prints_a_table_by_default(tmp_path: Path) -> None:
    daily_dataset(tmp_path, "2024-01-01", 3)
    result = invoke("--data", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "Downloads gained by model, 2024-01-02 to 2024-01-03" in result.output
    assert "acme  model-2      1,600     300    300.0  50.0%" in result.output


def test_command_uses_the_config_output_uri_and_data_wins(tmp_path: Path) -> None:
    daily_dataset(tmp_path / "data", "2024-01-01", 2)
    config = tmp_path / "connector.yaml"
    config.write_text(
        "registry:\n  base_url: http://127.0.0.1:9\n  token: ${MODEL_REGISTRY_TOKEN}\n"
        f"orgs:\n  - name: acme\n    models: [model-0]\noutput:\n  uri: {tmp_path / 'data'}\n",
        encoding="utf-8",
    )
    runner = CliRunner(env={"MODEL_REGISTRY_TOKEN": "t"})
    group = ConnectorGroup("connector", commands=[report_command])
    via_config = runner.invoke(group, ["report", "--config", str(config), "--format", "json"])
    assert via_config.exit_code == 0, via_config.output
    assert '"downloads_gained": 300' in via_config.stdout
    wins = runner.invoke(
        group, ["report", "--config", str(config), "--data", str(tmp_path / "empty")]
    )
    assert wins.exit_code == ExitCode.CONFIG
    assert "no snapshots under" in wins.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the dataset with --data URI, or --config FILE"),
        (["--data", "x", "--days", "2", "--start", "2024-01-01"], "--days cannot be combined"),
        (["--data", "x", "--end", "2024-01-01"], "--end needs --start"),
        (["--data", "x", "--by", "color"], "'color' is not one of"),
        (["--data", "x", "--top", "-1"], "-1 is not in the range x>=0"),
    ],
)
def test_command_usage_errors(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == ExitCode.CONFIG == 2
    assert message in result.stderr


def test_command_single_snapshot_exits_with_a_clear_error(tmp_path: Path) -> None:
    write_snapshot(tmp_path, "2024-01-01", [V("acme", "a", "1.0", 1)])
    result = invoke("--data", str(tmp_path))
    assert result.exit_code == ExitCode.CONFIG
    assert "Error: the dataset holds a single snapshot (2024-01-01)" in result.stderr
    assert isinstance(result.exception, SystemExit)


def test_command_window_filters_and_format(tmp_path: Path) -> None:
    daily_dataset(tmp_path, "2024-01-01", 5, models=3)
    args = ["--data", str(tmp_path), "--start", "2024-01-02", "--end", "2024-01-04"]
    result = invoke(
        *args,
        "--by",
        "version",
        "--top",
        "0",
        "--org",
        "acme",
        "--model",
        "model-0",
        "--model",
        "model-1",
        "--format",
        "csv",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("org,model,version,framework,created_at,download_count")
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["acme", "model-1", "1.0"],
        ["acme", "model-0", "1.0"],
    ]
    assert ",400,200.0," in lines[1]


def test_command_accepts_org_slash_model_as_the_report_prints_it(tmp_path: Path) -> None:
    for day, count in (("2024-01-01", 10), ("2024-01-02", 30)):
        write_snapshot(
            tmp_path,
            day,
            [V("acme", "a", "1", count), V("globex", "a", "1", count * 2), V("acme", "b", "1", 5)],
        )
    both = invoke("--data", str(tmp_path), "--model", "a", "--format", "json")
    assert [(r["org"], r["model"]) for r in json.loads(both.output)] == [
        ("globex", "a"),
        ("acme", "a"),
    ]
    one = invoke("--data", str(tmp_path), "--model", "acme/a", "--format", "json")
    assert one.exit_code == 0, one.output
    assert [(r["org"], r["model"], r["downloads_gained"]) for r in json.loads(one.output)] == [
        ("acme", "a", 20)
    ]
    two = invoke("--data", str(tmp_path), "--model", "acme/a", "--model", "acme/b")
    assert two.exit_code == 0 and "globex" not in two.output
    for args in (
        ["--model", "acme/a", "--model", "globex/b"],  # would also match acme/b
        ["--model", "acme/a", "--model", "b"],
        ["--model", "acme/a", "--org", "globex"],
        ["--model", "acme/"],
    ):
        refused = invoke("--data", str(tmp_path), *args)
        assert refused.exit_code == 2, (args, refused.output)
        assert "--model" in refused.output
