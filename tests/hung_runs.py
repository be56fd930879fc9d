"""A real `connector extract` process against a simulator that holds every request for a
minute: the setting of the signal and multi-process tests, which stop such a run and check
what it left behind."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
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


def start_extract(config: Path, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """`connector extract` for today's snapshot in its own process, JSON summary on stdout;
    `prefix` runs it under another command (`timeout 300`)."""
    env = {**os.environ, "MODEL_REGISTRY_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    command = [*prefix, sys.executable, "-m", "connector", "extract", "--config", str(config)]
    return subprocess.Popen(
        [*command, "--summary-format", "json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class StderrLines:
    """Reads a process's stderr in a thread, so a test can wait for a line (an event the
    process announces) and still have every line at the end."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        with self._changed:
            if not self._changed.wait_for(
                lambda: any(text in line for line in self.lines), timeout
            ):
                raise AssertionError(f"{text!r} never appeared on stderr: {self.lines[-5:]}")

    def close(self, process: subprocess.Popen[str]) -> str:
        """Every line, once the process has ended (killed if it has not); pipes closed."""
        process.kill()
        process.wait(timeout=30)
        self._thread.join(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        return "".join(self.lines)


def in_flight(out: Path, process: subprocess.Popen[str] | None) -> Callable[[], bool]:
    """True once the run holds the output lock and its part's: it is fetching (`process`
    None: whatever process holds them, such as the child of `timeout`)."""

    def ready() -> bool:
        locks = [out / LOCK_NAME, *out.glob("_shards/*/1-of-1.lock")]
        if len(locks) != 2 or not all(lock.is_file() for lock in locks):
            return False
        texts = [lock.read_text() for lock in locks]
        pid = f'"pid": {process.pid}' if process is not None else '"pid": '
        return all(pid in text for text in texts)

    return ready


def assert_lock_free(out: Path) -> None:
    """The output's lock is not held (by a process that should have let it go)."""
    with open(out / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held
