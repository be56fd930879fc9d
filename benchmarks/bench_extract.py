"""`make bench`: extraction speed, CPU and memory against the simulated registry.

The simulator runs in its own process (so its CPU is not billed to the client) with 20 ms of
latency per request. Each measurement runs the connector in a fresh child process so peak RSS is
the run's own. Targets (issue "The extractor end to end"):

- wall time <= 1.25 x ideal + 1 s, where ideal = requests x latency / concurrency
- client CPU of the extract <= 1.5 s (2,000 models)
- peak RSS grows < 20% from 2,000 to 20,000 models
- >= 15x faster than a sequential requests + pandas.json_normalize + to_parquet loop
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LATENCY_MS = 20.0
CONCURRENCY = 16
TOKEN = "bench-token"
MODELS_PER_ORG = 500


def start_simulator(models: int) -> tuple[subprocess.Popen[str], str]:
    orgs = max(1, models // MODELS_PER_ORG)
    command = [
        sys.executable,
        "-m",
        "connector",
        "simulate",
        "--orgs",
        str(orgs),
        "--models-per-org",
        str(models // orgs),
        "--versions-per-model",
        "10",
        "--versions-shape",
        "objects",
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


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
    if process.stdout:
        process.stdout.close()


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
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of
# a parent that once held 195 MiB reports at least that much, whatever it used itself.
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"wall": wall, "cpu": cpu, "rss": rss, "rows": summary.rows,
                  "exit": int(summary.exit_code), "requests": sum(summary.requests.values())}))
"""


def run_connector(url: str, models: int, output: Path) -> dict[str, Any]:
    orgs = max(1, models // MODELS_PER_ORG)
    document = {
        "registry": {
            "base_url": url,
            "token": "${BENCH_TOKEN}",
            "concurrency": CONCURRENCY,
            "timeout_seconds": 30,
        },
        "orgs": [
            {"name": f"org-{o:02d}", "models": [f"model-{m:04d}" for m in range(models // orgs)]}
            for o in range(orgs)
        ],
        "output": {"uri": str(output)},
    }
    config = output / "bench-config.json"  # outside model_versions/, removed with the directory
    config.write_text(json.dumps(document))
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(config), TOKEN],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["exit"] != 0:
        raise SystemExit(f"extract failed: {completed.stdout}\n{completed.stderr}")
    return result


FLOOR = r"""
import json, queue, sys, threading, time
import requests
from requests.adapters import HTTPAdapter
url, token, orgs, per_org, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
todo = queue.Queue()
for org in range(orgs):
    for model in range(per_org):
        todo.put(f"{url}/api/v1/org/org-{org:02d}/models/model-{model:04d}/versions")
session = requests.Session()
session.mount("http://", HTTPAdapter(pool_maxsize=threads))
def work():
    while True:
        try:
            target = todo.get_nowait()
        except queue.Empty:
            return
        session.get(target, headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
cpu0, wall0 = time.process_time(), time.perf_counter()
workers = [threading.Thread(target=work) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(json.dumps({"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}))
"""


def run_requests_floor(url: str, models: int) -> dict[str, Any]:
    """The same requests on the same threads with nothing else: what `requests` alone costs."""
    orgs = max(1, models // MODELS_PER_ORG)
    args = [url, TOKEN, str(orgs), str(models // orgs), str(CONCURRENCY)]
    completed = subprocess.run(
        [sys.executable, "-c", FLOOR, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def run_baseline(url: str, models: int, output: Path) -> dict[str, Any]:
    """The naive approach: one request at a time, json_normalize, one to_parquet at the end."""
    import pandas as pd
    import requests

    orgs = max(1, models // MODELS_PER_ORG)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    frames = []
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        for org in range(orgs):
            for model in range(models // orgs):
                response = session.get(
                    f"{url}/api/v1/org/org-{org:02d}/models/model-{model:04d}/versions",
                    timeout=30,
                )
                response.raise_for_status()
                body = response.json()
                frame = pd.json_normalize(body["versions"])
                frame["model_name"] = body["name"]
                frames.append(frame)
    pd.concat(frames).to_parquet(output / "baseline.parquet")
    return {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}


def measure(models: int, repeats: int, baseline: bool) -> dict[str, Any]:
    process, url = start_simulator(models)
    try:
        runs = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="bench-") as output:
                runs.append(run_connector(url, models, Path(output)))
        result: dict[str, Any] = {
            "models": models,
            "requests": runs[0]["requests"],
            "rows": runs[0]["rows"],
            "wall_median": statistics.median(r["wall"] for r in runs),
            "cpu_median": statistics.median(r["cpu"] for r in runs),
            "rss_peak_median": statistics.median(r["rss"] for r in runs),
            "rss_peak_max": max(r["rss"] for r in runs),
        }
        if baseline:
            floors = [run_requests_floor(url, models) for _ in range(repeats)]
            result["requests_floor_cpu_median"] = statistics.median(f["cpu"] for f in floors)
            with tempfile.TemporaryDirectory(prefix="bench-base-") as output:
                result["baseline"] = run_baseline(url, models, Path(output))
        return result
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--large-models", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(REPO))

    small = measure(args.models, args.repeats, baseline=not args.no_baseline)
    large = measure(args.large_models, args.repeats, baseline=False)
    ideal = small["requests"] * LATENCY_MS / 1000 / CONCURRENCY
    checks = {
        "wall <= 1.25 x ideal + 1 s": small["wall_median"] <= 1.25 * ideal + 1,
        "client CPU <= 1.5 s": small["cpu_median"] <= 1.5,
        "peak RSS growth 2k -> 20k < 20%": large["rss_peak_median"]
        < 1.2 * small["rss_peak_median"],
    }
    report = {
        "small": small,
        "large": large,
        "ideal_seconds": ideal,
        "wall_over_ideal": small["wall_median"] / ideal,
        "rss_growth": large["rss_peak_median"] / small["rss_peak_median"] - 1,
    }
    if "requests_floor_cpu_median" in small:
        report["cpu_over_requests_floor"] = small["cpu_median"] / small["requests_floor_cpu_median"]
    if "baseline" in small:
        speedup = small["baseline"]["wall"] / small["wall_median"]
        report["speedup_vs_baseline"] = speedup
        checks["speedup >= 15x"] = speedup >= 15
    mib = 1024 * 1024
    print(f"models {small['models']:,}: {small['rows']:,} rows, {small['requests']:,} requests")
    print(
        f"  wall median {small['wall_median']:.2f}s (ideal {ideal:.2f}s, "
        f"ratio {report['wall_over_ideal']:.2f}); CPU median {small['cpu_median']:.2f}s; "
        f"peak RSS median {small['rss_peak_median'] / mib:.0f} MiB "
        f"(max {small['rss_peak_max'] / mib:.0f})"
    )
    if "requests_floor_cpu_median" in small:
        print(
            f"  the same requests on {CONCURRENCY} threads with requests alone: CPU median "
            f"{small['requests_floor_cpu_median']:.2f}s (connector = "
            f"{report['cpu_over_requests_floor']:.2f}x that)"
        )
    if "baseline" in small:
        print(
            f"  sequential baseline {small['baseline']['wall']:.2f}s wall, "
            f"{small['baseline']['cpu']:.2f}s CPU: "
            f"connector {report['speedup_vs_baseline']:.1f}x faster"
        )
    print(
        f"models {large['models']:,}: {large['rows']:,} rows, wall {large['wall_median']:.2f}s, "
        f"peak RSS median {large['rss_peak_median'] / mib:.0f} MiB "
        f"(max {large['rss_peak_max'] / mib:.0f}; "
        f"growth of the medians {report['rss_growth']:+.1%})"
    )
    for name, passed in checks.items():
        print(f"  [{'PASS' if passed else 'FAIL'}] {name}")
    if args.json:
        args.json.write_text(json.dumps({**report, "checks": checks}, indent=2))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
