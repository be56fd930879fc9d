"""`make bench`: the extract as a whole process, in one process and with `--processes 2`.

What a scheduler sees: `python -m connector extract` started as a subprocess, timed from spawn to
exit (interpreter start, imports, config, the run, the publish, the run record, shutdown), its
CPU from `wait4`'s rusage (its own and that of every process it waited for: the shard processes
of `--processes 2`), its peak RSS from the same rusage (the parent here stays small, so the
figure is the run's own). The simulator runs in its own process (its CPU is not the client's),
with 2,000 models of about 10 versions (`versions` as objects) and 20 ms of latency per request;
the connector runs at concurrency 16 (shared out across the processes with `--processes 2`).

Target (issue #22, item 3): in one process and with `--processes 2`, wall time
<= 1.25 x ideal + import time, where ideal = requests x latency / concurrency and import time is
measured in the same run as a whole process too: a `python -c` importing exactly the modules a
run of `connector extract` ends up with (listed by a traced run at the start of each benchmark,
so a module the run newly imports is counted on both sides; `connector extract --help` would
not do: it imports neither the run nor pandas, pyarrow or DuckDB). The import process,
`--processes 1` and `--processes 2` run in turn, in a rotating order, `--repeats` times
(medians), so all three see the same load.

Also measured in the same run:
- the CPU per request (whole process, and net of the import process's CPU);
- the same requests made by `requests` alone on the same 16 threads (one session, a pool of 16),
  JSON parsed, imports excluded: the floor of the HTTP stack the connector uses;
- the speed-up over a sequential requests + `json_normalize` + `to_parquet` loop, run as a whole
  process too; target >= 15 x, each side net of its own start-up (the naive loop's imports are
  timed alone), as this figure has always compared the work (the whole-process ratio is printed
  beside it);
- the peak RSS from 2,000 to 20,000 models (one process each); target < 20 % growth.
Exits 1 when a target is missed.

Bytecode: every child runs with `PYTHONPYCACHEPREFIX` set to a scratch directory (and
`PYTHONDONTWRITEBYTECODE` unset), so after the traced run every start reads compiled bytecode,
as an installed wheel does, whatever the developer's environment says.
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
TARGET_RATIO = 1.25  # wall <= TARGET_RATIO x ideal + import time
TARGET_SPEEDUP = 15.0
TARGET_RSS_GROWTH = 0.20


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
    """Stop the simulator (a large catalog can take longer to tear down than to measure)."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout:
        process.stdout.close()


def child_environment(pycache: Path) -> dict[str, str]:
    """The children's environment: bytecode cached in `pycache`, the token for the config."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        PYTHONPYCACHEPREFIX=str(pycache),
        PYTHONPATH=str(REPO),
        BENCH_TOKEN=TOKEN,
    )
    return env


def timed(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run `command` as a whole process: wall time from spawn to exit, CPU and peak RSS from
    wait4 (its own and its waited-for children's), its stdout; a failure stops the benchmark."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=REPO, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise SystemExit(f"{command} exited {process.returncode}:\n{stdout}\n{stderr[-4000:]}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss * 1024,
        "stdout": stdout,
    }


def write_config(url: str, models: int, directory: Path) -> Path:
    """The run's YAML config (JSON is YAML), as an operator writes it: token from the env."""
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
        "output": {"uri": str(directory / "dataset")},
    }
    config = directory / "config.yaml"
    config.write_text(json.dumps(document))
    return config


def extract_command(config: Path, output: Path, processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "connector",
        "extract",
        "--config",
        str(config),
        "--output",
        str(output),
        "--date",
        "2026-01-01",
        "--allow-backdate",
        "--no-progress",
        "--summary-format",
        "json",
        "--processes",
        str(processes),
    ]


def run_extract(config: Path, scratch: Path, processes: int, env: dict[str, str]) -> dict[str, Any]:
    output = Path(tempfile.mkdtemp(prefix="dataset-", dir=scratch))
    result = timed(extract_command(config, output, processes), env)
    summary = json.loads(result.pop("stdout"))
    if not summary.get("published"):
        raise SystemExit(f"extract --processes {processes} did not publish: {summary}")
    result["requests"] = sum(summary["requests"].values())
    result["rows"] = summary["rows"]
    return result


# Run once, traced: the modules a whole `connector extract` has loaded when it exits.
TRACE = r"""
import atexit, json, sys
listing, sys.argv = sys.argv[1], ["connector", *sys.argv[2:]]
def dump():
    with open(listing, "w") as handle:
        json.dump(sorted(sys.modules), handle)
atexit.register(dump)
from connector.cli import main
main()
"""


def traced_modules(config: Path, scratch: Path, env: dict[str, str]) -> list[str]:
    """The modules a one-process extract imports (this run also compiles the bytecode)."""
    listing = scratch / "modules.json"
    output = Path(tempfile.mkdtemp(prefix="dataset-", dir=scratch))
    command = [sys.executable, "-c", TRACE, str(listing)]
    timed(command + extract_command(config, output, 1)[3:], env)
    names: list[str] = json.loads(listing.read_text())
    # What the interpreter has before any import, and what `-c` itself is, are no import.
    return [name for name in names if name not in sys.builtin_module_names and name != "__main__"]


def import_command(modules: list[str]) -> list[str]:
    """`python -c` importing every module of the run (in alphabetical order); prints
    those that cannot be imported by name (none, so far), which the report names."""
    code = (
        "import importlib, json\n"
        "failed = []\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        failed.append(name)\n"
        "print(json.dumps(failed))\n"
    )
    return [sys.executable, "-c", code]


def run_import(modules: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = timed(import_command(modules), env)
    result["failed"] = json.loads(result.pop("stdout"))
    return result


FLOOR = r"""
import json, queue, sys, threading, time
import requests
url, token, orgs, per_org, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
todo = queue.Queue()
for org in range(orgs):
    for model in range(per_org):
        todo.put(f"{url}/api/v1/org/org-{org:02d}/models/model-{model:04d}/versions")
session = requests.Session()
session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=threads, max_retries=0))
headers = {"Authorization": f"Bearer {token}"}
def work():
    while True:
        try:
            target = todo.get_nowait()
        except queue.Empty:
            return
        json.loads(session.get(target, headers=headers, timeout=30).content)
cpu0, wall0 = time.process_time(), time.perf_counter()
workers = [threading.Thread(target=work) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(json.dumps({"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}))
"""


def run_requests_floor(url: str, models: int, env: dict[str, str]) -> dict[str, Any]:
    """The same requests on the same threads with nothing else: what the HTTP stack the
    connector uses (requests) costs by itself, JSON parsing included (timed inside the process,
    imports excluded)."""
    orgs = max(1, models // MODELS_PER_ORG)
    args = [url, TOKEN, str(orgs), str(models // orgs), str(CONCURRENCY)]
    result = timed([sys.executable, "-c", FLOOR, *args], env)
    floor: dict[str, Any] = json.loads(result["stdout"].strip().splitlines()[-1])
    return floor


NAIVE = r"""
import sys
import pandas as pd
import requests
url, token, orgs, per_org, output = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:5]), sys.argv[5]
frames = []
with requests.Session() as session:
    session.headers["Authorization"] = f"Bearer {token}"
    for org in range(orgs):
        for model in range(per_org):
            response = session.get(
                f"{url}/api/v1/org/org-{org:02d}/models/model-{model:04d}/versions", timeout=30
            )
            response.raise_for_status()
            body = response.json()
            frame = pd.json_normalize(body["versions"])
            frame["model_name"] = body["name"]
            frames.append(frame)
pd.concat(frames).to_parquet(output)
"""


def run_naive(url: str, models: int, scratch: Path, env: dict[str, str]) -> dict[str, Any]:
    """The naive approach as a whole process: one request at a time, json_normalize, one
    to_parquet at the end; and its imports alone (pandas, requests), so that both sides of
    the speed-up can be taken net of start-up, as the speed-up was always measured."""
    orgs = max(1, models // MODELS_PER_ORG)
    output = scratch / "naive.parquet"
    args = [url, TOKEN, str(orgs), str(models // orgs), str(output)]
    result = timed([sys.executable, "-c", NAIVE, *args], env)
    imports = [timed([sys.executable, "-c", NAIVE_IMPORTS], env)["wall"] for _ in range(3)]
    result["import_wall"] = statistics.median(imports)
    return result


NAIVE_IMPORTS = "import pandas, pyarrow.parquet, requests"


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def listed(values: Any, spec: str = ".2f") -> str:
    return ", ".join(format(value, spec) for value in values)


def measure_small(args: argparse.Namespace, scratch: Path, env: dict[str, str]) -> dict[str, Any]:
    """Import, `--processes 1` and `--processes 2` in turn (rotating), then the floors."""
    simulator, url = start_simulator(args.models)
    try:
        config = write_config(url, args.models, scratch)
        modules = traced_modules(config, scratch, env)
        kinds = ["import", "p1", "p2"]
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for repeat in range(args.repeats):
            for kind in kinds[repeat % 3 :] + kinds[: repeat % 3]:
                if kind == "import":
                    runs[kind].append(run_import(modules, env))
                else:
                    runs[kind].append(run_extract(config, scratch, int(kind[1]), env))
        floors = [run_requests_floor(url, args.models, env) for _ in range(args.repeats)]
        naive = None if args.no_baseline else run_naive(url, args.models, scratch, env)
    finally:
        stop(simulator)
    return {"modules": len(modules), "runs": runs, "floors": floors, "naive": naive}


def measure_rss(models: int, repeats: int, scratch: Path, env: dict[str, str]) -> list[int]:
    """Peak RSS of one-process extracts of `models` models."""
    simulator, url = start_simulator(models)
    try:
        config = write_config(url, models, scratch)
        return [run_extract(config, scratch, 1, env)["rss"] for _ in range(repeats)]
    finally:
        stop(simulator)


def report(small: dict[str, Any], large_rss: list[int] | None) -> tuple[dict[str, Any], bool]:
    """The figures, the checks, and whether every target was met (printed as it goes)."""
    runs = small["runs"]
    requests = runs["p1"][0]["requests"]
    ideal = requests * LATENCY_MS / 1000 / CONCURRENCY
    imported = {key: median(runs["import"], key) for key in ("wall", "cpu", "rss")}
    limit = TARGET_RATIO * ideal + imported["wall"]
    figures: dict[str, Any] = {
        "requests": requests,
        "rows": runs["p1"][0]["rows"],
        "ideal_seconds": ideal,
        "import": {**imported, "modules": small["modules"]},
        "limit_seconds": limit,
    }
    checks: dict[str, bool] = {}
    mib = 1024 * 1024
    print(
        f"{requests:,} requests, {figures['rows']:,} rows; ideal {requests:,} x "
        f"{LATENCY_MS:g} ms / {CONCURRENCY} = {ideal:.2f} s"
    )
    print(
        f"import ({small['modules']} modules, a whole process): wall {imported['wall']:.2f} s "
        f"(runs {listed(r['wall'] for r in runs['import'])}), "
        f"CPU {imported['cpu']:.2f} s"
    )
    failed = runs["import"][0]["failed"]
    if failed:
        print(f"  (not importable by name, so not in the import time: {', '.join(failed)})")
    print(f"target: wall <= {TARGET_RATIO} x ideal + import = {limit:.2f} s")
    for processes in (1, 2):
        kind = f"p{processes}"
        wall, cpu = median(runs[kind], "wall"), median(runs[kind], "cpu")
        met = wall <= limit
        checks[f"--processes {processes}: wall <= {TARGET_RATIO} x ideal + import"] = met
        figures[kind] = {
            "wall": wall,
            "walls": [r["wall"] for r in runs[kind]],
            "cpu": cpu,
            "wall_over_limit": wall / limit,
            "run_over_ideal": (wall - imported["wall"]) / ideal,
            "cpu_ms_per_request": cpu / requests * 1000,
            "cpu_ms_per_request_net": (cpu - imported["cpu"]) / requests * 1000,
            "rss": median(runs[kind], "rss"),
        }
        f = figures[kind]
        print(
            f"--processes {processes}: wall {wall:.2f} s (runs "
            f"{listed(f['walls'])}): {f['wall_over_limit']:.2f} x the "
            f"limit; net of import {f['run_over_ideal']:.2f} x ideal; CPU {cpu:.2f} s = "
            f"{f['cpu_ms_per_request']:.2f} ms/request ({f['cpu_ms_per_request_net']:.2f} net of "
            f"import); peak RSS {f['rss'] / mib:.0f} MiB"
        )
    floor_cpu = statistics.median(f["cpu"] for f in small["floors"])
    floor_wall = statistics.median(f["wall"] for f in small["floors"])
    figures["requests_floor"] = {"cpu": floor_cpu, "wall": floor_wall}
    print(
        f"the same requests with requests alone on {CONCURRENCY} threads (imports excluded): "
        f"wall {floor_wall:.2f} s, CPU {floor_cpu:.2f} s = {floor_cpu / requests * 1000:.2f} "
        "ms/request"
    )
    naive = small["naive"]
    if naive is not None:
        # The work against the work: each side net of its own start-up (as always measured).
        work = figures["p1"]["wall"] - imported["wall"]
        speedup = (naive["wall"] - naive["import_wall"]) / work
        whole = naive["wall"] / figures["p1"]["wall"]
        figures["naive"] = {
            "wall": naive["wall"],
            "import_wall": naive["import_wall"],
            "speedup": speedup,
            "speedup_whole_process": whole,
        }
        checks[f"speed-up over the sequential baseline >= {TARGET_SPEEDUP:g} x"] = (
            speedup >= TARGET_SPEEDUP
        )
        print(
            f"sequential requests + json_normalize + to_parquet: {naive['wall']:.2f} s as a "
            f"whole process ({naive['import_wall']:.2f} s of it importing): net of start-up on "
            f"both sides the extract is {speedup:.1f} x faster ({whole:.1f} x as whole processes)"
        )
    if large_rss:
        growth = statistics.median(large_rss) / figures["p1"]["rss"] - 1
        figures["rss_growth"] = growth
        checks[f"peak RSS growth 2k -> 20k models < {TARGET_RSS_GROWTH:.0%}"] = (
            growth < TARGET_RSS_GROWTH
        )
        print(
            f"peak RSS (one process): {figures['p1']['rss'] / mib:.0f} MiB for the small run, "
            f"{statistics.median(large_rss) / mib:.0f} MiB for the large one "
            f"(runs {listed((r / mib for r in large_rss), '.0f')}): {growth:+.1%}"
        )
    for name, passed in checks.items():
        print(f"  [{'PASS' if passed else 'FAIL'}] {name}")
    return {**figures, "checks": checks}, all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--large-models", type=int, default=20000, help="0: skip the RSS run")
    parser.add_argument("--repeats", type=int, default=5, help="median of this many (>= 3)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the sequential loop")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as directory:
        scratch = Path(directory)
        env = child_environment(scratch / "pycache")
        small = measure_small(args, scratch, env)
        large = (
            measure_rss(args.large_models, args.repeats, scratch, env)
            if args.large_models
            else None
        )
    load_after = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; medians of {args.repeats}"
    )
    figures, passed = report(small, large)
    figures["load_average"] = {"before": load_before[0], "after": load_after[0]}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
