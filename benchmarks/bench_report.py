"""`make bench`: `connector report` over a synthetic year against the docs' DuckDB query.

Writes the synthetic year once (benchmarks/synthetic_year.py: 365 daily partitions of 50,000 to
55,000 version rows, about 19 M rows) under bench-data/ and reuses it while it matches. Then, in
the same run and each in a fresh child process, alternating (medians of 3): `connector report
--days 364` by model and by version with `--top 0`, and the DuckDB recipe of docs/querying.md
(read from it, with the dataset's path and the window's number of days substituted; like the
report, it finds its two snapshots in the data), run as a user would (`duckdb.sql(query).df()`);
both sides pay python's start and their imports. Peak RSS is the child's own (ru_maxrss from
wait4); the growth is 364 days against 30. Targets: by model at most 1.5 x the query, by version
with `--top 0` at most 2 x, peak RSS under 1 GiB and growing less than 30 % from 30 to 364 days.
Prints the ratios; exits non-zero while a target is missed.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import synthetic_year

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench-data" / "report-year"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))  # medians of 3; fewer only to look quickly
DOCS_QUERY = re.compile(r"<!-- query: duckdb\b.*?-->\n```sql\n(.*?)\n```\n", re.DOTALL)
# The recipe's window: the latest snapshot against the latest one at least N days older.
WINDOW_DAYS = re.compile(r"(?<=latest - )\d+(?=\))")
QUERY_CHILD = "import duckdb, sys; duckdb.sql(open(sys.argv[1]).read()).df()"


def docs_query(days: int) -> str:
    """The docs' DuckDB recipe over the benchmark's dataset, for a window of `days`."""
    text = (REPO / "docs" / "querying.md").read_text(encoding="utf-8")
    match = DOCS_QUERY.search(text)
    if match is None:
        raise SystemExit("docs/querying.md has no <!-- query: duckdb --> block")
    sql, count = WINDOW_DAYS.subn(str(days), match.group(1))
    if count != 1:
        raise SystemExit("the docs' DuckDB query no longer states its window once, as `latest - N`")
    return sql.replace("data/model_versions", f"{DATA}/model_versions").rstrip().rstrip(";")


def run_child(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process, its output discarded."""
    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    assert child.stderr is not None
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({child.returncode}): {errors.decode()}")
    return wall, usage.ru_maxrss * 1024


def report_args(days: int, by: str, top: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "connector",
        "report",
        "--data",
        str(DATA),
        "--days",
        str(days),
        "--by",
        by,
        "--top",
        str(top),
    ]


def main() -> int:
    shape = synthetic_year.Shape()
    if synthetic_year.matches(DATA, shape):
        print(f"reusing the synthetic year in {DATA}")
    else:
        print(f"writing the synthetic year into {DATA} (once) ...", flush=True)
        started = time.perf_counter()
        rows = synthetic_year.write_year(DATA, shape)
        print(f"  {rows:,} rows in {time.perf_counter() - started:.0f} s")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        queries = {}
        for days in (30, 364):
            queries[days] = Path(folder) / f"docs-{days}.sql"
            queries[days].write_text(docs_query(days), encoding="utf-8")
        measures = {
            "docs query, 364 days": [sys.executable, "-c", QUERY_CHILD, str(queries[364])],
            "report --by model, 364 days": report_args(364, "model", 20),
            "report --by version --top 0, 364 days": report_args(364, "version", 0),
            "docs query, 30 days": [sys.executable, "-c", QUERY_CHILD, str(queries[30])],
            "report --by model, 30 days": report_args(30, "model", 20),
            "report --by version --top 0, 30 days": report_args(30, "version", 0),
        }
        results: dict[str, list[tuple[float, int]]] = {name: [] for name in measures}
        for run in range(RUNS):
            for name, args in measures.items():
                results[name].append(run_child(args))
                wall, rss = results[name][-1]
                print(f"  run {run + 1}: {name}: {wall:.2f} s, {rss / 2**20:.0f} MiB", flush=True)
    load_after = os.getloadavg()
    wall = {name: statistics.median(w for w, _ in runs) for name, runs in results.items()}
    peak = {name: max(r for _, r in runs) for name, runs in results.items()}
    base = wall["docs query, 364 days"]
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f} (1 min)")
    print(f"{'measure':42} {'wall (median)':>14} {'ratio':>7} {'peak RSS':>10}")
    for name in measures:
        print(
            f"{name:42} {wall[name]:>12.2f} s {wall[name] / base:>6.2f}x "
            f"{peak[name] / 2**20:>7.0f} MiB"
        )
    misses = []
    for by, limit in (("model", 1.5), ("version --top 0", 2.0)):
        name = f"report --by {by}, 364 days"
        ratio = wall[name] / base
        if ratio > limit:
            misses.append(f"{name}: {ratio:.2f} x the docs query (target <= {limit} x)")
        if peak[name] >= 2**30:
            misses.append(f"{name}: peak RSS {peak[name] / 2**20:.0f} MiB (target < 1024 MiB)")
        growth = peak[name] / peak[f"report --by {by}, 30 days"] - 1
        print(f"peak RSS growth 30 -> 364 days, --by {by}: {growth:+.1%}")
        if growth >= 0.30:
            misses.append(f"{name}: RSS grows {growth:.0%} from 30 days (target < 30 %)")
    for miss in misses:
        print(f"TARGET MISSED: {miss}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
