"""What an operator sees: a progress bar only on a terminal, JSON log lines, logs on stderr and
the summary on stdout."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TOKEN, config_document, write_config

from connector.cli import main
from connector.errors import ExitCode, TargetFailure
from connector.extraction.summary import RunSummary
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
REPO = Path(__file__).parents[1]


def run_with_stderr_on_a_terminal(config: Path, *args: str) -> tuple[int, str]:
    """Run the CLI in a child whose stderr is a pseudo-terminal; return (exit code, stderr)."""
    master, slave = pty.openpty()
    # a fresh pty is 0 columns wide, and tqdm draws nothing in no width: size it like a terminal
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "MODEL_REGISTRY_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "connector", "extract", "--config", str(config), *args],
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize(("flag", "expect_bar"), [((), True), (("--no-progress",), False)])
def test_progress_bar_on_a_terminal(
    flag: tuple[str, ...], expect_bar: bool, start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator()
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    code, stderr = run_with_stderr_on_a_terminal(
        config, "--date", "2026-01-01", "--allow-backdate", *flag
    )
    assert code == 0
    assert ("6/6" in stderr and "model" in stderr) is expect_bar, stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator()
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    result = CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", "2026-01-01", "--allow-backdate"]
    )
    assert result.exit_code == 0
    assert "6/6" not in result.stderr
    forced = CliRunner().invoke(
        main,
        [
            "extract",
            "--config",
            str(config),
            "--date",
            "2026-01-02",
            "--allow-backdate",
            "--progress",
        ],
    )
    assert "6/6" in forced.stderr


def test_json_logs_carry_structured_fields(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=10)
    registry.set_faults(FaultPlan(not_found=frozenset({"org-00/model-0004"}), rate_5xx=0.3, seed=5))
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    result = CliRunner().invoke(
        main,
        [
            "extract",
            "--config",
            str(config),
            "--date",
            "2026-01-01",
            "--allow-backdate",
            "--log-format",
            "json",
        ],
    )
    assert result.exit_code == 3, result.output
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records, "expected log lines on stderr"
    assert all({"timestamp", "level", "event", "message"} <= set(r) for r in records)
    events = {r["event"] for r in records}
    assert {"run_started", "target_failed", "published", "retry"} <= events
    [failed] = [r for r in records if r["event"] == "target_failed"]
    assert (failed["org"], failed["model"], failed["status"], failed["attempt"]) == (
        "org-00",
        "model-0004",
        404,
        1,
    )
    retry = next(r for r in records if r["event"] == "retry")
    assert retry["level"] == "warning" and retry["attempt"] >= 1 and retry["status"] >= 500
    # the summary is on stdout, not mixed into the logs
    assert result.stdout.startswith("snapshot 2026-01-01")


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.mark.slow
def test_log_lines_never_split_the_progress_bar(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=2, models_per_org=20)
    missing = frozenset(f"org-0{i % 2}/model-{i:04d}" for i in range(0, 20, 3))
    registry.set_faults(FaultPlan(not_found=missing, rate_5xx=0.2, seed=3))
    document = config_document(registry, tmp_path / "out", registry_settings={"concurrency": 2})
    config = write_config(tmp_path / "c.yaml", document)
    code, stderr = run_with_stderr_on_a_terminal(
        config, "--date", "2026-01-01", "--allow-backdate", "--min-success-ratio", "0.5"
    )
    assert code == 3, stderr
    segments = [ANSI.sub("", s) for s in re.split(r"[\r\n]", stderr)]
    logged = [s for s in segments if " ERROR " in s or " WARNING " in s]
    assert len([s for s in logged if " ERROR " in s]) == len(missing)
    assert all(TIMESTAMP.match(s.strip()) for s in logged), [
        s for s in logged if not TIMESTAMP.match(s.strip())
    ]
    # the bar counts what succeeded and failed as it goes
    assert f"ok={40 - len(missing)} failed={len(missing)}" in stderr


def test_a_rejected_org_is_one_error_line_with_a_count(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=25)
    registry.set_faults(FaultPlan(forbidden_orgs=frozenset({"org-00"})))
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    args = ["extract", "--config", str(config), "--date", "2026-01-01", "--allow-backdate"]
    result = CliRunner().invoke(main, [*args, "--min-success-ratio", "0.5"])
    assert result.exit_code == ExitCode.AUTH, result.output
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "org org-00: token rejected (HTTP 403" in errors[0]
    assert "25 model(s) failed or not attempted" in errors[0]
    as_json = CliRunner().invoke(
        main, [*args, "--min-success-ratio", "0.5", "--log-format", "json"]
    )
    records = [json.loads(line) for line in as_json.stderr.splitlines() if line.strip()]
    rejected = [r for r in records if r["level"] == "error"]
    assert [(r["event"], r["org"], r["status"]) for r in rejected] == [
        ("org_rejected", "org-00", 403)
    ]
    assert (
        len(
            json.loads(CliRunner().invoke(main, [*args, "--summary-format", "json"]).stdout)[
                "failures"
            ]
        )
        == 25
    )  # every one is still in the summary


def test_failures_without_a_status_say_what_they_were(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=10)
    registry.set_faults(FaultPlan(malformed={"org-00/model-0001": "count_negative"}))
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    result = CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", "2026-01-01", "--allow-backdate"]
    )
    assert result.exit_code == ExitCode.PARTIAL
    [line] = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert "HTTP -" not in line
    assert "org-00/model-0001: " in line and "invalid" in line
    failures = [
        {
            "org": "o",
            "model": "m",
            "status": None,
            "error_type": "timeout",
            "detail": "slow",
            "attempts": 6,
        },
        {
            "org": "o",
            "model": "n",
            "status": 404,
            "error_type": "not_found",
            "detail": "gone",
            "attempts": 1,
        },
    ]
    summary = RunSummary(
        run_id="r",
        snapshot_date="2026-01-01",
        output_uri="/o",
        started_at="",
        failures=tuple(TargetFailure.from_dict(failure) for failure in failures),
    )
    text = summary.render_text()
    assert "FAILED o/m: timeout: slow (attempts: 6)" in text
    assert "FAILED o/n: HTTP 404 not_found: gone (attempts: 1)" in text
