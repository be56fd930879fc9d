"""`extract --processes P`: P shard processes, one lock, one progress bar, one summary, one
publish; the limits of the config stay limits for the whole run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from ground_truth import dataset_rows, expected, project
from helpers import TOKEN, config_document, file_hashes, wait_until, write_config
from hung_runs import BOUND, assert_lock_free, hung_run, start_extract

import connector
from connector.cli import main
from connector.config import load_config
from connector.dataset import shards as staging
from connector.dataset.layout import LOCK_NAME
from connector.dataset.localstore import LocalStore
from connector.errors import ExitCode
from connector.extraction.interrupt import Interrupt
from connector.extraction.processes import cpu_count, split_limits
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY1 = "2026-01-01"


def extract(config: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", DAY1, "--allow-backdate", *args]
    )


@pytest.fixture
def setup(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> tuple[SimulatedRegistry, Path, Path]:
    registry = start_simulator(orgs=2, models_per_org=6, versions_shape="mixed")
    out = tmp_path / "out"
    return registry, out, write_config(tmp_path / "c.yaml", config_document(registry, out))


def test_two_processes_publish_one_snapshot_with_one_summary(setup: Any, tmp_path: Path) -> None:
    registry, out, config = setup
    single = extract(config, "--output", str(tmp_path / "single"), "--summary-format", "json")
    assert single.exit_code == 0, single.output
    result = extract(config, "--processes", "2", "--summary-format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # one summary on stdout, not one per process
    assert summary["published"] is True
    assert summary["shards"] == 2
    assert summary["targets"] == {"attempted": 12, "succeeded": 12, "failed": 0}
    # the same requests as one process makes, counted once each
    assert summary["requests"] == json.loads(single.stdout)["requests"]
    assert summary["requests_by_operation"] == json.loads(single.stdout)["requests_by_operation"]
    assert summary["requests_by_operation"]["listModelVersions"] == 12
    # mixed shape: a getModelVersion for every string entry but the latest
    details = sum(1 for row in registry.expected_rows(1) if row["file_size_bytes"] is not None)
    assert summary["requests"] == {"200": 12 + details}
    assert summary["requests_by_operation"] == {
        "getModelVersion": details,
        "listModelVersions": 12,
    }
    assert project(dataset_rows(out)) == project(expected(registry, 1))
    manifest = json.loads(Path(summary["partition"], "_manifest.json").read_text())
    assert manifest["run_id"] == summary["run_id"]
    assert not (out / staging.SHARDS_DIR).exists()


def test_one_progress_bar_and_the_childrens_logs_in_one_stream(setup: Any) -> None:
    registry, _, config = setup
    registry.set_faults(FaultPlan(not_found=frozenset({"org-01/model-0003"})))
    result = extract(config, "--processes", "2", "--progress", "--min-success-ratio", "0.5")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "12/12" in result.output  # the bar counted every child's targets
    # one bar over all 12 targets, no bar per child (log lines redraw it, so it shows repeatedly)
    assert set(re.findall(r"\d+/(\d+) \[", result.output)) == {"12"}
    assert "ok=11 failed=1" in result.output  # the children's outcomes reach the bar's counters
    # a child's log record, printed by the parent's handler (its format, its redaction)
    assert "org-01/model-0003: HTTP 404 not_found (server: not_found_error)" in result.output
    assert "staged shard 1/2" in result.output and "staged shard 2/2" in result.output
    assert TOKEN not in result.output


def test_the_output_lock_is_held_for_the_whole_run(setup: Any) -> None:
    _, out, config = setup
    out.mkdir()
    with LocalStore(out).lock(LOCK_NAME, "other-run"):
        result = extract(config, "--processes", "2")
    assert result.exit_code == ExitCode.LOCK_HELD
    assert "(run other-run)" in result.output
    assert not (out / "model_versions").exists()


def test_a_426_in_a_child_publishes_nothing(setup: Any) -> None:
    registry, out, config = setup
    registry.set_faults(FaultPlan(upgrade_required=True))
    result = extract(config, "--processes", "2")
    assert result.exit_code == ExitCode.INCOMPATIBLE_API, result.output
    assert "nothing was published" in result.output
    assert not (out / "model_versions").exists()


def test_shard_and_processes_do_not_combine(setup: Any) -> None:
    _, out, config = setup
    result = extract(config, "--processes", "2", "--shard", "1/2")
    assert result.exit_code == ExitCode.CONFIG
    assert "--shard and --processes cannot be combined" in result.output
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_process_count_is_a_usage_error(setup: Any, value: str) -> None:
    _, out, config = setup
    result = extract(config, "--processes", value)
    assert result.exit_code == 2
    assert "--processes" in result.output
    assert not out.exists()


def test_auto_is_the_cpu_count() -> None:
    command = main.get_command(None, "extract")  # type: ignore[arg-type]
    assert command is not None
    context = command.make_context("extract", ["--config", "c.yaml", "--processes", "auto"])
    assert context.params["processes"] == cpu_count() >= 1


def test_limits_are_shared_out_across_the_processes(setup: Any, tmp_path: Path) -> None:
    registry, out, _ = setup
    document = config_document(
        registry, out, registry_settings={"concurrency": 5, "max_requests_per_second": 10}
    )
    config = load_config(write_config(tmp_path / "limits.yaml", document))
    children = split_limits(config, 2)
    assert [c.registry.concurrency for c in children] == [3, 2]
    assert [c.registry.max_requests_per_second for c in children] == [5.0, 5.0]
    assert all(c.orgs == config.orgs and c.output == config.output for c in children)
    assert [c.registry.concurrency for c in split_limits(config, 8)] == [1] * 8


def test_the_command_line_forks_its_shard_processes(setup: Any) -> None:
    """A `connector` process runs no other thread, so its children are forked (the in-process
    tests above, beside the simulator's thread, go through the forkserver)."""
    registry, out, config = setup
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "extract",
            "--config",
            str(config),
            "--date",
            DAY1,
            "--allow-backdate",
            "--processes",
            "2",
            "--log-level",
            "DEBUG",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MODEL_REGISTRY_TOKEN": TOKEN},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "start method fork" in completed.stderr
    assert "(from 2 shards)" in completed.stdout
    assert project(dataset_rows(out)) == project(expected(registry, 1))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED)],
)
def test_a_signal_to_the_parent_stops_every_shard_process(
    signum: int, code: ExitCode, start_simulator: StartSimulator, tmp_path: Path
) -> None:
    config, out = hung_run(start_simulator, tmp_path)  # every request hangs for a minute
    process = start_extract(config, "--processes", "2")
    day = datetime.now(UTC).date()
    works = [(out / staging.part_path(day, index, 2)) for index in (1, 2)]
    locks = [work.with_name(f"{work.name}.lock") for work in works]
    try:
        # both children are fetching: each holds its part's lock
        wait_until(lambda: all(lock.is_file() and '"pid"' in lock.read_text() for lock in locks))
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=BOUND)
    finally:
        process.kill()
    assert process.returncode == int(code), stderr
    summary = json.loads(stdout)
    assert summary["outcome"] == "interrupted"
    assert summary["published"] is False
    assert signal.Signals(signum).name in summary["message"]
    assert "Traceback" not in stderr
    assert not (out / "model_versions").exists()
    assert not any((w / staging.RECORD_NAME).exists() for w in works)  # nothing staged
    assert_lock_free(out)
    [record] = (out / "_runs").glob("*/*.json")  # a stopped run leaves its record, too
    assert summary["record"] == str(record)
    assert json.loads(record.read_text())["outcome"] == "interrupted"


def test_a_stopped_shard_keeps_the_part_an_earlier_run_staged(setup: Any) -> None:
    registry, out, config_path = setup
    assert extract(config_path, "--shard", "1/2").exit_code == 0
    part = out / staging.part_path(date.fromisoformat(DAY1), 1, 2)
    before, requests = file_hashes(part), registry.stats().requests
    interrupt = Interrupt()
    interrupt.request(signal.SIGTERM)
    summary = connector.extract(
        load_config(config_path),
        date.fromisoformat(DAY1),
        allow_backdate=True,
        shard=(1, 2),
        interrupt=interrupt,
    )
    interrupt.close()
    assert summary.exit_code == ExitCode.TERMINATED
    assert summary.staged is None
    assert file_hashes(part) == before
    assert registry.stats().requests == requests  # stopped before any request
