"""`make bench`: the whole registry, discovery plus per-version detail, against the simulator.

One org of 2,000 models (20 pages of listModels at limit 100), `versions` as plain strings and
`version_detail: missing`, so every version but the latest costs a getModelVersion (about
20,000 detail requests), at 20 ms of latency and concurrency 16. The simulator runs in its own
process; each measurement runs the connector in a fresh child process. Target (issue "The
whole registry"): wall time <= 1.25 x ideal + 1 s, ideal = requests x latency / concurrency,
with the request count the run itself reports (the same run's figures, so the ratio holds on
any machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LATENCY_MS = 20.0
CONCURRENCY = 16
MODELS = 2_000
VERSIONS_PER_MODEL = 11  # mean; every version but the latest needs its detail
TOKEN = "bench-token"

CHILD = r"""
import json, sys, time
from datetime import date
from connector.config import parse_config
from connector.extraction.run import extract
with open(sys.argv[1]) as handle:
    document = json.load(handle)
config = parse_config(document, env={"BENCH_TOKEN": sys.argv[2]})
cpu0, wall0 = time.process_time(), time.perf_counter()
summary = extract(config, date(2026, 1, 1), progress=False, allow_backdate=True)
cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
print(json.dumps({"wall": wall, "cpu": cpu, "rows": summary.rows, "exit": int(summary.exit_code),
                  "targets": summary.targets_succeeded,
                  "by_operation": summary.requests_by_operation}))
"""


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "connector",
        "simulate",
        "--orgs",
        "1",
        "--models-per-org",
        str(MODELS),
        "--versions-per-model",
        str(VERSIONS_PER_MODEL),
        "--versions-shape",
        "strings",
        "--latency-ms",
        str(LATENCY_MS),
        "--token",
        TOKEN,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return process, line.removeprefix("listening on ")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc (the simulator's share of the run)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
    if process.stdout:
        process.stdout.close()


def run_connector(url: str, output: Path) -> dict[str, Any]:
    document = {
        "registry": {
            "base_url": url,
            "token": "${BENCH_TOKEN}",
            "concurrency": CONCURRENCY,
            "timeout_seconds": 30,
            "version_detail": "missing",
        },
        "orgs": [{"name": "org-00", "models": ["*"]}],
        "output": {"uri": str(output)},
    }
    config = output / "bench-config.json"
    output.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(document))
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(config), TOKEN],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["exit"] != 0 or result["targets"] != MODELS:
        raise SystemExit(f"extract failed: {completed.stdout}\n{completed.stderr}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs; the median is reported")
    args = parser.parse_args()
    simulator, url = start_simulator()
    load = os.getloadavg()[0]
    try:
        before = cpu_seconds(simulator.pid)
        with tempfile.TemporaryDirectory(prefix="bench-registry-") as scratch:
            runs = [run_connector(url, Path(scratch) / f"run{i}") for i in range(args.repeats)]
        simulator_cpu = (cpu_seconds(simulator.pid) - before) / len(runs)
    finally:
        stop(simulator)
    walls = [run["wall"] for run in runs]
    wall = statistics.median(walls)
    operations = runs[0]["by_operation"]
    requests = sum(operations.values())
    ideal = requests * LATENCY_MS / 1000 / CONCURRENCY
    limit = 1.25 * ideal + 1.0
    met = wall <= limit
    print(
        f"registry: {MODELS:,} models discovered in {operations.get('listModels', 0)} listModels "
        f"page(s); {operations.get('getModelVersion', 0):,} getModelVersion, "
        f"{operations.get('listModelVersions', 0):,} listModelVersions; {runs[0]['rows']:,} rows"
    )
    print(
        f"wall {wall:.2f} s (median of {len(walls)}: {', '.join(f'{w:.2f}' for w in walls)}); "
        f"ideal ({requests:,} x {LATENCY_MS:g} ms / {CONCURRENCY}) {ideal:.2f} s: "
        f"{wall / ideal:.2f} x ideal; target <= 1.25 x ideal + 1 s = {limit:.2f} s: "
        f"{'met' if met else 'NOT MET'}"
    )
    client_cpu = statistics.median(run["cpu"] for run in runs)
    print(
        f"CPU per run: client {client_cpu:.2f} s, simulator {simulator_cpu:.2f} s, on "
        f"{os.cpu_count()} core(s) with load average {load:.1f} at the start (both processes "
        "need the CPU they need: on a loaded machine the wall time measures the load)"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
