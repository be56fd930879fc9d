"""`make bench`: `connector status` on a year of partitions, locally and on S3 (moto).

Writes, through the Store, a synthetic year: 365 daily partitions (a small data file and a
manifest with its `checks`, every 30th day overridden by `connector accept`), the 100 run records
`keep_run_records` keeps by default, and 3 held days. Then measures, medians of 3: `connector
status --format json` in a fresh child process (interpreter start and imports included) on the
local copy, and `connector.status()` in process on the local copy and on an S3 prefix (moto's
server on 127.0.0.1, when the dev tools are installed). Status reads manifests and run records,
never data: its cost is one small read per partition, so the targets are absolute. Exits
non-zero while a target is missed.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench-data" / "status-year"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
FIRST = date(2025, 1, 1)
DAYS = 365
TARGETS = {"status CLI, local": 2.0, "status(), local": 0.5, "status(), S3 (moto)": 5.0}

sys.path.insert(0, str(REPO))

from connector.checks.status import status  # noqa: E402
from connector.config import CHECK_NAMES  # noqa: E402
from connector.dataset import partition  # noqa: E402
from connector.dataset.held import hold_day  # noqa: E402
from connector.dataset.locate import open_store  # noqa: E402
from connector.dataset.store import Store  # noqa: E402


def _checks(day: date) -> dict[str, Any]:
    overridden = day.toordinal() % 30 == 0
    results = [
        {
            "name": name,
            "verdict": "fail" if overridden and name == "coverage_config" else "pass",
            "value": 1 if overridden and name == "coverage_config" else 0,
            "threshold": 0,
            "unit": "count",
            "detail": f"{name}: measured against the day before",
            "examples": [],
        }
        for name in CHECK_NAMES
    ]
    document: dict[str, Any] = {
        "verdict": "overridden" if overridden else "passed",
        "previous_snapshot": (day - timedelta(days=1)).isoformat(),
        "results": results,
    }
    if overridden:
        document["override"] = {
            "by": "alice",
            "host": "etl-1",
            "at": f"{day}T09:00:00+00:00",
            "run_id": uuid.uuid4().hex,
            "reason": "org retired",
        }
    return document


def _manifest(day: date, run_id: str) -> dict[str, Any]:
    observed = f"{day.isoformat()}T03:15:00.000+00:00"
    return {
        "run_id": run_id,
        "snapshot_date": day.isoformat(),
        "started_at": observed,
        "observed_at": observed,
        "finished_at": f"{day.isoformat()}T03:20:00.000+00:00",
        "targets": {"attempted": 500, "succeeded": 500, "failed": 0},
        "rows": 3,
        "failures": [],
        "checks": _checks(day),
    }


def write_year(store: Store) -> None:
    """The synthetic year, through the store's own publish and hold protocols."""
    rows = [
        {
            "extracted_at": 0,
            "org": "acme",
            "model": "m",
            "model_name": "acme/m",
            "version": f"1.0.{i}",
            "version_rank": i + 1,
            "is_latest": i == 0,
            "download_count": i,
        }
        for i in range(3)
    ]
    for offset in range(DAYS):
        day = FIRST + timedelta(days=offset)
        run_id = uuid.uuid4().hex
        writer = partition.open_day_writer(store, run_id, batch_rows=100)
        writer.add_rows(rows)
        manifest = _manifest(day, run_id)
        writer.close(footer=manifest)
        if offset >= DAYS - 3:
            hold_day(store, day + timedelta(days=3), run_id, {**manifest, "rows": 3})
        else:
            partition.publish_day(store, day, run_id, {**manifest, "rows": 3})
        if offset >= DAYS - 100:
            record = {
                "run_id": run_id,
                "snapshot_date": day.isoformat(),
                "outcome": "ok",
                "exit_code": 0,
                "published": True,
                "finished_at": manifest["finished_at"],
                "settings": {"output": store.uri},
            }
            store.put(f"_runs/{day.isoformat()}/{run_id}.json", json.dumps(record).encode())


def median_seconds(action: Any) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli() -> None:
    subprocess.run(
        [sys.executable, "-m", "connector", "status", "--data", str(DATA), "--format", "json"],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=REPO,
    )


def s3_case(results: dict[str, float]) -> None:
    """The same year on an S3 prefix of moto's server (skipped without the dev tools)."""
    try:
        sys.path.insert(0, str(REPO / "tests"))
        import pyarrow.fs as pafs
        from s3_server import S3Server
    except ImportError as exc:
        print(f"  S3 case skipped: {exc}")
        return
    server = S3Server().start()
    try:
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=server.url,
            AWS_EC2_METADATA_DISABLED="true",
        )
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        endpoint = server.url.removeprefix("http://")
        admin = pafs.S3FileSystem(
            endpoint_override=endpoint, scheme="http", allow_bucket_creation=True
        )
        admin.create_dir(bucket)
        store = open_store(f"s3://{bucket}/lake")
        started = time.perf_counter()
        write_year(store)
        print(f"  wrote the year on S3 in {time.perf_counter() - started:.0f} s", flush=True)
        check(status(store))
        results["status(), S3 (moto)"] = median_seconds(lambda: status(store))
    finally:
        server.stop()


def check(found: Any) -> None:
    """The benchmark measures the real answer: a year, 3 held days, 12 overridden."""
    assert found.snapshots == DAYS - 3, found.snapshots
    assert len(found.held) == 3 and len(found.overridden) >= 12, found
    assert not found.problems, found.problems


def main() -> int:
    store = open_store(str(DATA))
    if len(list(DATA.glob("model_versions/*"))) != DAYS - 3:
        print(f"writing the synthetic year into {DATA} (once) ...", flush=True)
        if DATA.exists():
            shutil.rmtree(DATA)
        write_year(store)
    check(status(store))
    load_before = os.getloadavg()
    results = {
        "status CLI, local": median_seconds(cli),
        "status(), local": median_seconds(lambda: status(store)),
    }
    s3_case(results)
    load_after = os.getloadavg()
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f} (1 min)")
    misses = []
    for name, seconds in results.items():
        print(f"{name:24} {seconds:>7.3f} s (median of {RUNS}; target <= {TARGETS[name]} s)")
        if seconds > TARGETS[name]:
            misses.append(name)
    for name in misses:
        print(f"TARGET MISSED: {name}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
