"""SIGINT and SIGTERM stop a real `connector extract` process talking to a server that hangs.

The simulator holds every request for a minute (and the client's timeout is longer still), so
a run that waited for its requests instead of cutting them would blow the generous bound each
test waits for the process.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import TOKEN, config_document, wait_until
from hung_runs import (
    BOUND,
    StderrLines,
    assert_lock_free,
    hung_run,
    in_flight,
    start_extract,
)

from connector import extract
from connector.config import parse_config
from connector.errors import ExitCode
from connector.extraction.interrupt import REPEAT_WINDOW_SECONDS, Interrupt, SignalHandler
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


def assert_stopped_cleanly(stdout: str, stderr: str, out: Path, code: int) -> None:
    """The run ended its own way after a stop: summary, run record, nothing published."""
    assert "again: exiting at once" not in stderr
    assert "Traceback" not in stderr
    summary = json.loads(stdout)
    assert (summary["outcome"], summary["exit_code"]) == ("interrupted", code)
    assert summary["published"] is False
    [record] = (out / "_runs").glob("*/*.json")
    assert json.loads(record.read_text())["outcome"] == "interrupted"
    assert not (out / "model_versions").exists()
    assert_lock_free(out)


def test_the_same_signal_twice_at_once_is_one_request_to_stop(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """What `timeout` does: SIGTERM to the connector, then to its process group. The second
    is sent once the first has been handled (the run logs it), so it is handled on its own,
    milliseconds later: every time, not by luck. It is the same request: summary and record."""
    config, out = hung_run(start_simulator, tmp_path)
    process = start_extract(config)
    stderr = StderrLines(process)
    try:
        wait_until(in_flight(out, process))
        process.send_signal(signal.SIGTERM)
        stderr.wait_for("SIGTERM received: stopping")
        process.send_signal(signal.SIGTERM)
        assert process.stdout is not None
        stdout = process.stdout.read()
        code = process.wait(timeout=BOUND)
    finally:
        text = stderr.close(process)
    assert code == ExitCode.TERMINATED, text
    assert_stopped_cleanly(stdout, text, out, ExitCode.TERMINATED)
    assert "SIGTERM again at once: the same request" in text


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_a_run_under_timeout_ends_with_its_summary_and_timeout_exits_124(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    """The sample crontab's `timeout 6h connector extract ...`, for real: timeout is made to
    expire now (SIGALRM is its own timer's signal), signals the connector and its group, and
    exits 124 (not 143) while the connector writes its summary and run record."""
    config, out = hung_run(start_simulator, tmp_path)
    process = start_extract(config, prefix=("timeout", "300"))
    try:
        wait_until(in_flight(out, None))
        process.send_signal(signal.SIGALRM)
        stdout, stderr = process.communicate(timeout=BOUND)
    finally:
        process.kill()
    assert process.returncode == 124, stderr
    assert_stopped_cleanly(stdout, stderr, out, ExitCode.TERMINATED)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("second", "after", "exits"),
    [
        (signal.SIGTERM, 0.0, None),
        (signal.SIGTERM, REPEAT_WINDOW_SECONDS - 0.01, None),
        (signal.SIGTERM, REPEAT_WINDOW_SECONDS, 128 + signal.SIGTERM),
        (signal.SIGTERM, 60.0, 128 + signal.SIGTERM),
        (signal.SIGINT, 0.0, 128 + signal.SIGINT),  # another signal is another request
    ],
)
def test_a_repeat_within_the_window_is_the_same_request(
    second: int, after: float, exits: int | None
) -> None:
    clock, exited = FakeClock(), []
    interrupt = Interrupt()
    try:
        handler = SignalHandler(interrupt, clock=clock, exit_now=exited.append)
        handler(signal.SIGTERM)
        assert interrupt.requested and interrupt.signum == signal.SIGTERM
        clock.now += after
        handler(second)
        assert exited == ([] if exits is None else [exits])
        assert interrupt.signum == signal.SIGTERM  # the request stays the first signal's
    finally:
        interrupt.close()
