"""A real `connector extract` process against a simulator that holds every request for a
minute: the setting of the signal and multi-process tests, which stop such a run and check
what it left behind."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from helpers import REPO, TOKEN, config_document, write_config

from connector.dataset.layout import LOCK_NAME
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
BOUND = 20  # seconds: far below the 60 s the hung requests would take


def hung_run(start_simulator: StartSimulator, tmp_path: Path) -> tuple[Path, Path]:
    """A config whose every request hangs; and the output it would publish into."""
    registry = start_simulator(orgs=1, models_per_org=12, latency_seconds=60)
    out = tmp_path / "out"
    document = config_document(
        registry, out, registry_settings={"concurrency": 4, "timeout_seconds": 90}
    )
    return write_config(tmp_path / "c.yaml", document), out


def start_extract(config: Path, *args: str) -> subprocess.Popen[str]:
    """`connector extract` for today's snapshot in its own process, JSON summary on stdout."""
    env = {**os.environ, "MODEL_REGISTRY_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "connector", "extract", "--config", str(config)]
    return subprocess.Popen(
        [*command, "--summary-format", "json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def in_flight(out: Path, process: subprocess.Popen[str]) -> Callable[[], bool]:
    """True once the run holds the output lock and its part's: it is fetching."""

    def ready() -> bool:
        locks = [out / LOCK_NAME, *out.glob("_shards/*/1-of-1.lock")]
        return len(locks) == 2 and all(
            f'"pid": {process.pid}' in lock.read_text() for lock in locks
        )

    return ready


def assert_lock_free(out: Path) -> None:
    """The output's lock is not held (by a process that should have let it go)."""
    with open(out / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
