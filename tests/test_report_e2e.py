"""Two extracts from the simulator on consecutive days, then `connector report`: per-version gains
equal the simulator's ground truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import (
    config_document,
    readme_dates,
    run_readme_duckdb,
    run_readme_pandas,
    run_readme_polars,
    write_config,
)

import connector
from connector.cli import main
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]


def extract_two_days(
    registry: SimulatedRegistry,
    tmp_path: Path,
    version_detail: str = "missing",
    dates: tuple[str, str] = ("2026-01-01", "2026-01-02"),
    out_name: str = "out",
) -> Path:
    out = tmp_path / out_name
    document = config_document(registry, out, registry_settings={"version_detail": version_detail})
    config = write_config(tmp_path / "c.yaml", document)
    for day, snapshot_date in zip((1, 2), dates, strict=True):
        registry.set_day(day)
        result = CliRunner().invoke(
            main, ["extract", "--config", str(config), "--date", snapshot_date, "--allow-backdate"]
        )
        assert result.exit_code == 0, result.output
    return out


def test_per_version_gains_equal_ground_truth(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=4, versions_shape="objects", seed=3)
    out = extract_two_days(registry, tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--data",
            str(out),
            "--days",
            "1",
            "--by",
            "version",
            "--format",
            "json",
            "--top",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)

    expected = {}
    new_versions = set()
    for org, model in registry.targets():
        for row in registry.expected_rows(2):
            if (row["org"], row["model"]) != (org, model):
                continue
            before = registry.download_count(org, model, row["version"], 1)
            after = registry.download_count(org, model, row["version"], 2)
            assert after is not None
            if before is None:
                new_versions.add((org, model, row["version"]))
            expected[(org, model, row["version"])] = after - (before or 0)
    got = {(r["org"], r["model"], r["version"]): r["downloads_gained"] for r in rows}
    assert got == expected
    assert new_versions, "the simulator should release at least one version on day 2"
    assert {(r["org"], r["model"], r["version"]) for r in rows if r["is_new"]} == new_versions
    assert all(r["start_snapshot"] == "2026-01-01" for r in rows)
    assert all(r["end_snapshot"] == "2026-01-02" for r in rows)
    assert all(r["gained_per_day"] == r["downloads_gained"] for r in rows)  # a one-day window


def test_unknown_counts_are_excluded_and_counted(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    # strings shape without detail: only the latest version of each model carries a count
    registry = start_simulator(orgs=1, models_per_org=3, versions_shape="strings")
    out = extract_two_days(registry, tmp_path, version_detail="off")
    result = CliRunner().invoke(
        main, ["report", "--data", str(out), "--days", "1", "--by", "model", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    unknown = sum(
        1
        for day in (1, 2)
        for r in registry.expected_rows(day, version_detail="off")
        if r["download_count"] is None
    )
    assert unknown > 0
    assert f"note: {unknown} row(s) with an unknown download count excluded" in result.stderr


def test_the_readme_queries_agree_with_the_report_on_an_extracted_dataset(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's DuckDB and pandas queries, read from the README, on what `connector extract`
    published on the README's own dates (into `data/`, the path the README uses)."""
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="objects", seed=5)
    start, end = readme_dates()
    data = extract_two_days(
        registry, tmp_path, dates=(start.isoformat(), end.isoformat()), out_name="data"
    )
    expected = connector.report(data, start=start, end=end, by="model", top=None)
    assert expected["downloads_gained"].sum() > 0
    monkeypatch.chdir(tmp_path)
    columns = ["org", "model", "download_count", "downloads_gained"]
    duck = run_readme_duckdb()
    plain = run_readme_pandas()
    assert duck[columns].values.tolist() == expected[columns].values.tolist()
    assert plain[columns].values.tolist() == expected[columns].values.tolist()
    fast = run_readme_polars()
    assert fast[columns].values.tolist() == expected[columns].values.tolist()
