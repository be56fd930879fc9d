"""`connector status` and `connector.status()`: the dataset's health from its manifests, run
records and held days, on each store; every document it reads is untrusted."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from held_runs import DROPPED_ORG, config_for
from helpers import TOKEN
from stores import copy_tree

from connector import status
from connector.checks.document import failing_text, read_checks
from connector.checks.screen import render_status
from connector.checks.status import Held, LastRun
from connector.cli import main
from connector.cli.status import parse_age
from connector.config import Config
from connector.dataset.layout import MANIFEST_NAME, partition_path
from connector.dataset.locate import open_store
from connector.dataset.store import Store
from connector.errors import ExitCode
from connector.extraction.summary import RunSummary
from connector.simulator.server import SimulatedRegistry, SimulatorConfig

StartSimulator = Callable[..., SimulatedRegistry]


def at(day: date, hour: int = 3) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def run_on(config: Config, day: date) -> RunSummary:
    """A run observing at 03:00 UTC of its own day (not backdated)."""
    from connector import extract

    return extract(config, day, clock=lambda: at(day))


def dataset_with_gaps_and_a_held_day(registry: SimulatedRegistry, store: Store) -> RunSummary:
    """Snapshots of Jan 1, 2 and 5 (3 and 4 missing); Jan 6 held (an org dropped)."""
    for day in (1, 2, 5):
        registry.set_day(day)
        assert run_on(config_for(registry, store), date(2026, 1, day)).exit_code == ExitCode.OK
    registry.set_day(6)
    held = run_on(config_for(registry, store, drop_org=DROPPED_ORG), date(2026, 1, 6))
    assert held.exit_code == ExitCode.HELD
    return held


@pytest.fixture(scope="module")
def built(
    shared_store: Callable[[], AbstractContextManager[Store]],
) -> tuple[str, RunSummary]:
    """`dataset_with_gaps_and_a_held_day` on each kind of store, built once for the module:
    the tests that take it only read it (a test that changes it works on a copy)."""
    registry = SimulatedRegistry(SimulatorConfig(token=TOKEN, orgs=2, models_per_org=2)).start()
    try:
        with shared_store() as store:
            held = dataset_with_gaps_and_a_held_day(registry, store)
    finally:
        registry.stop()
    return store.uri, held


@pytest.fixture
def gaps(built: tuple[str, RunSummary], store_environment: None) -> tuple[Store, RunSummary]:
    """The module's dataset with gaps and a held day, and the environment that reads it."""
    uri, held = built
    return open_store(uri), held


def test_status_shows_gaps_a_held_day_the_last_runs_and_the_age(
    gaps: tuple[Store, RunSummary],
) -> None:
    store, held = gaps
    found = status(store, now=at(date(2026, 1, 8)))

    assert (found.snapshots, found.first_snapshot, found.last_snapshot) == (
        3,
        date(2026, 1, 1),
        date(2026, 1, 5),
    )
    assert (found.missing_days, found.missing) == (2, (date(2026, 1, 3), date(2026, 1, 4)))
    assert found.newest_observed_at == at(date(2026, 1, 5))
    assert found.age == timedelta(days=3)
    assert found.older_than(timedelta(hours=26)) and not found.older_than(timedelta(days=4))
    failing = failing_text(read_checks({"checks": held.checks}, "the summary"))
    assert failing.startswith("coverage_config 2 > 0, row_count ")
    observed = at(date(2026, 1, 6)).isoformat(timespec="milliseconds")
    assert found.held == (Held(date(2026, 1, 6), held.run_id, failing, observed),)
    runs = [(run.day.day, run.outcome, run.exit_code, run.published) for run in found.last_runs]
    assert runs == [
        (6, "held", 10, False),
        (5, "ok", 0, True),
        (2, "ok", 0, True),
        (1, "ok", 0, True),
    ]
    assert found.problems == () and found.overridden == ()

    text = render_status(found)
    assert "snapshots  3 from 2026-01-01 to 2026-01-05" in text
    assert "newest     observed 2026-01-05T03:00:00+00:00 (3.0 d ago)" in text
    assert "missing    2 day(s) between them: 2026-01-03, 2026-01-04" in text
    assert f"  2026-01-06  run {held.run_id}: {failing}" in text
    assert f"  2026-01-06  held (exit 10)  run {held.run_id}" in text

    document = json.loads(json.dumps(found.to_dict()))
    assert document["age_seconds"] == 3 * 86400
    assert document["missing"] == ["2026-01-03", "2026-01-04"]
    assert document["held"][0]["day"] == "2026-01-06"
    assert document["last_runs"][0]["outcome"] == "held"


def test_the_probe_exits_11_when_the_newest_snapshot_is_older_than_max_age(
    gaps: tuple[Store, RunSummary],
) -> None:
    store, _ = gaps  # newest observed 2026-01-05
    old = CliRunner().invoke(main, ["status", "--data", store.uri, "--max-age", "26h"])
    assert old.exit_code == ExitCode.STALE, old.output
    assert "Error: the newest snapshot is older than --max-age 26.0 h (age: " in old.stderr
    assert "snapshots  3 from 2026-01-01 to 2026-01-05" in old.stdout
    as_json = CliRunner().invoke(
        main, ["status", "--data", store.uri, "--format", "json", "--days", "2"]
    )
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert [run["day"] for run in document["last_runs"]] == ["2026-01-06", "2026-01-05"]


def test_a_fresh_snapshot_passes_the_probe(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    from connector import extract

    registry = start_simulator(orgs=1, models_per_org=2)
    store = open_store(str(tmp_path / "out"))
    assert extract(config_for(registry, store)).exit_code == ExitCode.OK  # today, now
    fresh = CliRunner().invoke(main, ["status", "--data", store.uri, "--max-age", "26h"])
    assert fresh.exit_code == 0, fresh.output
    stale = CliRunner().invoke(main, ["status", "--data", store.uri, "--max-age", "0m"])
    assert stale.exit_code == ExitCode.STALE


def test_an_empty_dataset_has_no_age_and_fails_the_probe(tmp_path: Path) -> None:
    found = status(str(tmp_path / "nothing"))
    assert (found.snapshots, found.age, found.last_runs) == (0, None, ())
    assert found.older_than(timedelta(days=365))
    assert "snapshots  none published yet" in render_status(found)
    result = CliRunner().invoke(main, ["status", "--data", str(tmp_path), "--max-age", "2d"])
    assert result.exit_code == ExitCode.STALE
    assert "(age: unknown)" in result.stderr


def test_status_reads_the_dataset_of_a_config_without_its_token(
    start_simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    config = tmp_path / "c.yaml"
    config.write_text(
        "registry: {base_url: 'https://r.example', token: '${UNSET_TOKEN}'}\n"
        f"orgs: [{{name: acme, models: [a]}}]\noutput: {{uri: '{out}'}}\n",
        encoding="utf-8",
    )
    monkeypatch.delenv("UNSET_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"dataset    {out}" in result.stdout
    neither = CliRunner().invoke(main, ["status"])
    assert neither.exit_code == 2 and "give the dataset with --data URI" in neither.stderr


@pytest.mark.parametrize(
    ("text", "hours"), [("26h", 26), ("2d", 48), ("90m", 1.5), (" 1.5h ", 1.5), ("0m", 0)]
)
def test_max_age_takes_minutes_hours_or_days(text: str, hours: float) -> None:
    assert parse_age(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["26", "h", "2w", "-1d", "1e3h", ""])
def test_a_max_age_that_is_not_a_duration_is_a_usage_error(text: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--data", str(tmp_path), "--max-age", text])
    assert result.exit_code == 2
    assert "expected a duration such as 26h, 2d or 90m" in result.output


@pytest.mark.parametrize("store_kind", ["local"], indirect=True)
def test_every_untrusted_document_is_a_problem_never_a_traceback(
    built: tuple[str, RunSummary], fresh_store: Store
) -> None:
    store, held = fresh_store, built[1]
    copy_tree(open_store(built[0]), store)  # a copy of its own: this test damages it
    newest = f"{partition_path(date(2026, 1, 5))}/{MANIFEST_NAME}"
    store.put(newest, b"{not json")
    store.put(f"{partition_path(date(2026, 1, 2))}/{MANIFEST_NAME}", b'{"checks": {"verdict": 7}}')
    store.put("_runs/2026-01-06/bogus.json", b'{"run_id": "r", "exit_code": "many"}')
    store.put("_runs/2026-01-06/huge.json", b" " * (5 * 1024 * 1024))
    store.put("_runs/not-a-date/x.json", b"{}")
    store.put("_held/someday/x/_manifest.json", b"{}")
    store.put(f"_held/2026-01-06/{held.run_id}/_manifest.json", b"[1, 2]")
    store.put("_held/2026-01-07/abc/_manifest.json", json.dumps({"checks": []}).encode())

    found = status(store, now=at(date(2026, 1, 8)))
    problems = "\n".join(found.problems)
    assert f"{store.display(newest)} is not valid JSON" in problems
    assert "is not a valid ChecksRecord: verdict: Input should be a valid string" in problems
    assert "bogus.json is not a valid _Record" in problems
    assert "huge.json is larger than" in problems
    assert "not-a-date is not a date of run records" in problems
    assert "someday is not a held day" in problems
    assert f"{held.run_id}/_manifest.json does not hold a JSON object" in problems
    assert "2026-01-07/abc has no data file" not in problems  # named below, by run
    assert "the held snapshot 2026-01-07 run abc has no data file" in problems
    assert found.age is None and found.older_than(timedelta(days=3650))
    assert found.last_snapshot == date(2026, 1, 5)  # from the partition names alone
    assert [run.day.day for run in found.last_runs] == [6, 5, 2, 1]
    assert isinstance(found.last_runs[0], LastRun)
    result = CliRunner().invoke(main, ["status", "--data", store.uri])
    assert result.exit_code == 0, result.output
    assert "problem    " in result.stdout and "Traceback" not in result.output


def test_a_status_line_cannot_be_forged_by_a_record(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "out"))
    record = {
        "run_id": "r\nsnapshots  999 forged\x1b[2J",
        "snapshot_date": "2026-01-01",
        "outcome": "ok",
        "exit_code": 0,
        "finished_at": "2026-01-01T03:00:00+00:00",
    }
    store.put("_runs/2026-01-01/r.json", json.dumps(record).encode())
    text = render_status(status(store))
    assert "\nsnapshots  999 forged" not in text and "\x1b" not in text
    assert "r\\nsnapshots  999 forged\\x1b[2J" in text
