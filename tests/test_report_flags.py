"""`connector report` flags the snapshots of its window that were published with failing checks
overridden, or whose counters went down, in the text and the HTML output alike."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from held_runs import DROPPED_ORG, config_for
from s3_objects import DAY1, DAY2

from connector import accept, extract
from connector.cli import main
from connector.dataset.locate import open_store
from connector.errors import ExitCode
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY3 = DAY2.replace(day=3)


def test_overridden_checks_and_decreased_counters_are_flagged(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="objects")
    store = open_store(str(tmp_path / "out"))
    tolerant = {"checks": {"counts_decreased_max_share": 0.5}}
    assert (
        extract(config_for(registry, store, **tolerant), DAY1, allow_backdate=True).exit_code == 0
    )
    row = registry.expected_rows(1)[0]
    registry.set_faults(
        FaultPlan(download_counts={f"{row['org']}/{row['model']}/{row['version']}": 0})
    )
    registry.set_day(2)
    decreased = extract(config_for(registry, store, **tolerant), DAY2, allow_backdate=True)
    assert decreased.exit_code == ExitCode.OK  # within the configured share: published
    registry.set_faults(FaultPlan())
    registry.set_day(3)
    narrowed = config_for(registry, store, drop_org=DROPPED_ORG)
    assert extract(narrowed, DAY3, allow_backdate=True).exit_code == ExitCode.HELD
    assert accept(narrowed, DAY3, reason="org-01 retired").exit_code == ExitCode.OK

    window = ["--data", store.uri, "--start", "2026-01-01", "--end", "2026-01-03"]
    table = CliRunner().invoke(main, ["report", *window])
    assert table.exit_code == 0, table.output
    overridden = (
        "note: 1 snapshot(s) in the window were published with failing checks overridden: "
        "2026-01-03 (coverage_config 3 > 0, row_count "
    )
    assert overridden in table.output
    assert "(org-01 retired))" in table.output
    went_down = (
        "note: 1 snapshot(s) in the window have download counts that went down since the "
        "snapshot before (counts_decreased): 2026-01-02 ("
    )
    assert went_down in table.output

    page = CliRunner().invoke(main, ["report", *window, "--format", "html"])
    assert page.exit_code == 0, page.output
    notes = page.output[page.output.index('<ul class="notes">') :]
    assert html.escape(overridden.removeprefix("note: ")) in notes
    assert html.escape(went_down.removeprefix("note: ")) in notes


def test_a_window_of_plain_days_has_no_flags(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=2)
    store = open_store(str(tmp_path / "out"))
    for number, day in enumerate((DAY1, DAY2), start=1):
        registry.set_day(number)
        assert extract(config_for(registry, store), day, allow_backdate=True).exit_code == 0
    result = CliRunner().invoke(main, ["report", "--data", store.uri, "--days", "1"])
    assert result.exit_code == 0, result.output
    assert "overridden" not in result.output and "went down since" not in result.output
