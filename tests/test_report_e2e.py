"""Two extracts from the simulator on consecutive days, then `connector report`: per-version gains
equal the simulator's ground truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from helpers import extract_two_days

from connector.cli import main
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]


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
