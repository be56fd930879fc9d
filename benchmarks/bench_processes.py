"""`make bench`: `extract --processes 2` against `--processes 1`, measured in the same run.

The simulator runs in its own process with 2,000 models and 20 ms of latency per request; the
connector runs with concurrency 16 (shared out across the processes) in a fresh child process
per measurement, alternating P=1 and P=2 so both see the same machine load. Target (issue
"Beyond one machine"): with `--processes 2`, wall time <= 1.25 x ideal + 1 s, where
ideal = requests x latency / concurrency. Also reported: the speed-up of P=2 over P=1 and the
CPU per request of each (the measuring process and every shard process it started).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import (  # the sibling benchmark's simulator helpers
    CONCURRENCY,
    LATENCY_MS,
    MODELS_PER_ORG,
    REPO,
    TOKEN,
    start_simulator,
    stop,
)

MODELS = 2_000

CHILD = r"""
import json, resource, sys, time
from datetime import date
from connector.config import parse_config
from connector.extraction.run import extract
with open(sys.argv[1]) as handle:
    document = json.load(handle)
config = parse_config(document, env={"BENCH_TOKEN": sys.argv[2]})
def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
cpu0, kids0, wall0 = time.process_time(), children_cpu(), time.perf_counter()
summary = extract(config, date(2026, 1, 1), progress=False, allow_backdate=True,
                  processes=int(sys.argv[3]))
wall = time.perf_counter() - wall0
cpu = time.process_time() - cpu0 + children_cpu() - kids0
print(json.dumps({"wall": wall, "cpu": cpu, "rows": summary.rows, "exit": int(summary.exit_code),
                  "published": summary.published, "requests": sum(summary.requests.values())}))
"""


def run_connector(url: str, output: Path, processes: int) -> dict[str, Any]:
    orgs = max(1, MODELS // MODELS_PER_ORG)
    document = {
        "registry": {
            "base_url": url,
            "token": "${BENCH_TOKEN}",
            "concurrency": CONCURRENCY,
            "timeout_seconds": 30,
        },
        "orgs": [
            {"name": f"org-{o:02d}", "models": [f"model-{m:04d}" for m in range(MODELS // orgs)]}
            for o in range(orgs)
        ],
        "output": {"uri": str(output)},
    }
    config = output / "bench-config.json"
    config.write_text(json.dumps(document))
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(config), TOKEN, str(processes)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["exit"] != 0 or not result["published"]:
        raise SystemExit(f"extract failed: {completed.stdout}\n{completed.stderr}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    process, url = start_simulator(MODELS)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    try:
        for _ in range(args.repeats):
            for processes in (1, 2):
                with tempfile.TemporaryDirectory(prefix="bench-processes-") as output:
                    runs[processes].append(run_connector(url, Path(output), processes))
    finally:
        stop(process)
    requests = runs[1][0]["requests"]
    ideal = requests * LATENCY_MS / 1000 / CONCURRENCY
    wall = {p: statistics.median(r["wall"] for r in runs[p]) for p in runs}
    cpu = {p: statistics.median(r["cpu"] for r in runs[p]) for p in runs}
    limit = 1.25 * ideal + 1.0
    report = {
        "models": MODELS,
        "requests": requests,
        "ideal_seconds": round(ideal, 3),
        "limit_seconds": round(limit, 3),
        "wall_p1": round(wall[1], 3),
        "wall_p2": round(wall[2], 3),
        "wall_p2_over_ideal": round(wall[2] / ideal, 3),
        "speed_up_p2_over_p1": round(wall[1] / wall[2], 3),
        "cpu_ms_per_request_p1": round(cpu[1] / requests * 1000, 3),
        "cpu_ms_per_request_p2": round(cpu[2] / requests * 1000, 3),
        "target_met": wall[2] <= limit,
    }
    print(json.dumps(report, indent=2))
    print(
        f"--processes 2: {wall[2]:.2f} s wall (ideal {ideal:.2f} s, limit {limit:.2f} s): "
        f"{'met' if report['target_met'] else 'NOT MET'}; {report['speed_up_p2_over_p1']}x "
        f"over --processes 1 ({wall[1]:.2f} s); CPU per request "
        f"{report['cpu_ms_per_request_p1']} ms (P=1), {report['cpu_ms_per_request_p2']} ms (P=2)"
    )
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
