"""The wrong-date guard: a run files its counts under the UTC day it observes them (or the day
before); any other date is refused with exit 2 unless --allow-backdate, and a refused run leaves
the published partition byte-identical and calls nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TOKEN, config_document, write_config

import connector
from connector.cli import main
from connector.config import parse_config
from connector.errors import ExitCode
from connector.extraction.guards import SnapshotDateError, check_snapshot_date
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
JUST_AFTER_MIDNIGHT = datetime(2026, 6, 2, 0, 5, tzinfo=UTC)
TODAY = JUST_AFTER_MIDNIGHT.date()


def partition_bytes(out: Path, day: date) -> dict[str, bytes]:
    directory = out / "model_versions" / f"snapshot_date={day.isoformat()}"
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    ("offset", "allow_backdate", "backdated"),
    [(0, False, False), (-1, False, False), (-2, True, True), (-400, True, True)],
)
def test_dates_a_run_may_publish_under(offset: int, allow_backdate: bool, backdated: bool) -> None:
    day = TODAY + timedelta(days=offset)
    assert check_snapshot_date(day, JUST_AFTER_MIDNIGHT, allow_backdate=allow_backdate) is backdated


@pytest.mark.parametrize(("offset", "allow_backdate"), [(-2, False), (1, False), (1, True)])
def test_dates_a_run_may_not_publish_under(offset: int, allow_backdate: bool) -> None:
    day = TODAY + timedelta(days=offset)
    with pytest.raises(SnapshotDateError) as raised:
        check_snapshot_date(day, JUST_AFTER_MIDNIGHT, allow_backdate=allow_backdate)
    assert raised.value.exit_code == ExitCode.CONFIG
    assert day.isoformat() in str(raised.value) and TODAY.isoformat() in str(raised.value)


def test_the_window_follows_the_utc_day_not_the_clock_zone() -> None:
    # 23:30 on June 1 at UTC-5 is 04:30 UTC on June 2: May 31 is two UTC days back.
    evening = datetime(2026, 6, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert check_snapshot_date(date(2026, 6, 2), evening, allow_backdate=False) is False
    assert check_snapshot_date(date(2026, 6, 1), evening, allow_backdate=False) is False
    with pytest.raises(SnapshotDateError):
        check_snapshot_date(date(2026, 5, 31), evening, allow_backdate=False)


def test_library_run_just_after_midnight_uses_the_injected_clock(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=2)
    config = parse_config(
        config_document(registry, tmp_path / "out"), env={"MODEL_REGISTRY_TOKEN": TOKEN}
    )
    clock = lambda: JUST_AFTER_MIDNIGHT  # noqa: E731
    today = connector.extract(config, clock=clock)
    assert (today.exit_code, today.snapshot_date) == (ExitCode.OK, "2026-06-02")
    late = connector.extract(config, date(2026, 6, 1), clock=clock)
    assert late.exit_code == ExitCode.OK and late.backdated is False
    with pytest.raises(connector.SnapshotDateError):
        connector.extract(config, date(2026, 5, 31), clock=clock)
    with pytest.raises(connector.SnapshotDateError):
        connector.extract(config, date(2026, 6, 3), clock=clock, allow_backdate=True)
    old = connector.extract(config, date(2026, 5, 31), clock=clock, allow_backdate=True)
    assert old.exit_code == ExitCode.OK and old.backdated is True
    manifest = json.loads(
        (tmp_path / "out/model_versions/snapshot_date=2026-05-31/_manifest.json").read_text()
    )
    assert manifest["backdated"] is True
    assert manifest["observed_at"].startswith("2026-06-02T00:05:00")
    manifest = json.loads(
        (tmp_path / "out/model_versions/snapshot_date=2026-06-01/_manifest.json").read_text()
    )
    assert manifest["backdated"] is False


def test_cli_refuses_an_old_date_and_leaves_that_partition_byte_identical(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3)
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.yaml", config_document(registry, out))
    old = datetime.now(UTC).date() - timedelta(days=10)
    first = CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", old.isoformat(), "--allow-backdate"]
    )
    assert first.exit_code == 0, first.output
    assert "backdated" in first.stdout
    before = partition_bytes(out, old)
    registry.set_day(5)  # the counts have moved on: a replacement would change the bytes
    registry.reset_stats()

    refused = CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", old.isoformat()]
    )
    assert refused.exit_code == ExitCode.CONFIG
    assert "--allow-backdate" in refused.stderr and old.isoformat() in refused.stderr
    assert partition_bytes(out, old) == before
    assert registry.stats().requests == 0  # refused before anything was called
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    future = CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", tomorrow, "--allow-backdate"]
    )
    assert future.exit_code == ExitCode.CONFIG and "future" in future.stderr
    assert not (out / "model_versions" / f"snapshot_date={tomorrow}").exists()
