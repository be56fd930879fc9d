"""Real processes: a run killed with SIGKILL mid-flight, and two runs at once on one output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner
from ground_truth import DAY1
from helpers import REPO, TOKEN, config_document, file_hashes, wait_until, write_config

from connector import extract
from connector.cli import main
from connector.config import parse_config
from connector.dataset.layout import LOCK_NAME
from connector.dataset.localstore import LocalStore
from connector.errors import ExitCode
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
pytestmark = pytest.mark.slow


def start_cli(config: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MODEL_REGISTRY_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "extract", "--config", str(config), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def count_rows(out: Path) -> int:
    query = (
        f"SELECT count(*) FROM read_parquet('{out}/model_versions/*/*.parquet', "
        "hive_partitioning=true)"
    )
    [(count,)] = duckdb.sql(query).fetchall()
    return int(count)


@pytest.mark.parametrize("kill_after_requests", [1, 30, 60])
def test_sigkill_at_any_moment_leaves_published_data_intact(
    kill_after_requests: int, start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=30, versions_shape="objects")
    out = tmp_path / "out"
    # Small row groups, so a kill mid-run leaves partly written Parquet files in staging.
    document = config_document(
        registry, out, registry_settings={"concurrency": 2}, output_settings={"batch_rows": 100}
    )
    config = write_config(tmp_path / "c.yaml", document)
    baseline = extract(
        parse_config(document, env={"MODEL_REGISTRY_TOKEN": TOKEN}),
        date(2026, 1, 1),
        allow_backdate=True,
    )
    assert baseline.exit_code == ExitCode.OK
    partition = out / "model_versions" / f"snapshot_date={DAY1}"
    before = file_hashes(partition)
    rows_before = count_rows(out)

    registry.set_day(4)
    registry.reset_stats()
    process = start_cli(config, "--date", DAY1, "--allow-backdate")
    wait_until(lambda: registry.stats().requests >= kill_after_requests)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    # Either the old partition or (if the kill came after the swap) a complete new one.
    after = file_hashes(partition)
    if after != before:
        manifest = json.loads((partition / "_manifest.json").read_text())
        assert manifest["rows"] == count_rows(out)
    else:
        assert count_rows(out) == rows_before
    stray = [p for p in (out / "model_versions").rglob("*") if p.is_file()]
    assert all(p.parent == partition for p in stray)

    # The next run cleans up what the killed one left and publishes normally.
    rerun = CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", DAY1, "--allow-backdate"]
    )
    assert rerun.exit_code == 0, rerun.output
    assert not any((out / "_staging").iterdir())
    assert count_rows(out) == len(registry.expected_rows(4))


def test_a_second_run_exits_at_once_with_lock_held(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    """Another run holds the output's lock (held here directly, as that run would): this run
    is refused at once, naming the holder, and calls nothing."""
    registry = start_simulator(orgs=1, models_per_org=6)
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.yaml", config_document(registry, out))
    with LocalStore(out).lock(LOCK_NAME, "run-holder"):
        second = CliRunner().invoke(
            main, ["extract", "--config", str(config), "--date", DAY1, "--allow-backdate"]
        )
    assert second.exit_code == ExitCode.LOCK_HELD
    assert f"another run holds the lock on {out}: pid {os.getpid()} on host" in second.stderr
    assert "(run run-holder)" in second.stderr
    assert registry.stats().requests == 0
    assert not (out / "model_versions").exists()
