"""SIGINT and SIGTERM stop a real `connector extract` process talking to a server that hangs.

The simulator holds every request for a minute (and the client's timeout is longer still), so
a run that waited for its requests instead of cutting them would blow the generous bound each
test waits for the process.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import TOKEN, config_document, wait_until
from hung_runs import BOUND, assert_lock_free, hung_run, in_flight, start_extract

from connector import extract
from connector.config import parse_config
from connector.errors import ExitCode
from connector.extraction.interrupt import Interrupt
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED)],
)
def test_a_signal_stops_the_run_cleanly(
    signum: int, code: ExitCode, start_simulator: StartSimulator, tmp_path: Path
) -> None:
    config, out = hung_run(start_simulator, tmp_path)
    process = start_extract(config)
    try:
        wait_until(in_flight(out, process))
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=BOUND)
    finally:
        process.kill()
    assert process.returncode == int(code) == 128 + signum, stderr
    summary = json.loads(stdout)
    assert summary["outcome"] == "interrupted"
    assert summary["exit_code"] == 128 + signum
    assert summary["published"] is False
    assert signal.Signals(signum).name in summary["message"]
    assert summary["targets"]["succeeded"] == 0
    assert "Traceback" not in stderr
    assert f"{signal.Signals(signum).name} received: stopping" in stderr
    # One line says the run was interrupted and how many targets did not run: no line per
    # target, and no "aborted" (which means a 426) anywhere.
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "the run was interrupted: 12 target(s) did not run" in errors[0]
    assert "aborted" not in stderr
    assert not (out / "model_versions").exists()  # nothing published
    assert not list(out.glob("_staging/*"))  # nothing staged, nothing left half written
    assert not list(out.glob("_shards/*/*/*"))
    assert_lock_free(out)
    [record] = (out / "_runs").glob("*/*.json")
    assert json.loads(record.read_text())["outcome"] == "interrupted"
    assert summary["record"] == str(record)


def test_a_second_signal_exits_at_once(start_simulator: StartSimulator, tmp_path: Path) -> None:
    config, out = hung_run(start_simulator, tmp_path)
    process = start_extract(config)
    try:
        wait_until(in_flight(out, process))
        # SIGSTOP/SIGCONT make both signals pending together: the second one is handled
        # before the run has had any chance to finish after the first.
        process.send_signal(signal.SIGSTOP)
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGCONT)
        _, stderr = process.communicate(timeout=BOUND)
    finally:
        process.kill()
    assert process.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM), stderr
    assert "again: exiting at once" in stderr
    assert "Traceback" not in stderr
    assert not (out / "model_versions").exists()
    assert_lock_free(out)  # the kernel dropped the flock with the process


def test_the_library_stops_on_request(start_simulator: StartSimulator, tmp_path: Path) -> None:
    registry = start_simulator(orgs=1, models_per_org=12, latency_seconds=60)
    out = tmp_path / "out"
    document = config_document(registry, out, registry_settings={"timeout_seconds": 90})
    config = parse_config(document, env={"MODEL_REGISTRY_TOKEN": TOKEN})
    interrupt = Interrupt()

    def stop_once_requests_hang() -> None:
        wait_until(lambda: registry.stats().requests >= 4)
        interrupt.request()

    stopper = threading.Thread(target=stop_once_requests_hang)
    stopper.start()
    try:
        summary = extract(config, interrupt=interrupt)
    finally:
        stopper.join()
        interrupt.close()
    assert summary.exit_code == ExitCode.INTERRUPTED
    assert summary.to_dict()["outcome"] == "interrupted"
    assert not summary.published
    assert summary.requests.get("abandoned", 0) >= 1
    assert all(f.error_type == "skipped" for f in summary.failures)
    assert not (out / "model_versions").exists()
    assert_lock_free(out)
