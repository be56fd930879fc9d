"""`make bench`: peak memory of the connector for version lists at registry.max_response_bytes.

A loopback server (a thread of this process) answers every listModelVersions with the same body
of realistic summary objects, just under the 16 MiB cap. The connector runs `extract` in a fresh
child process at concurrency 8, once for 1 model and once for 8 (eight capped bodies in flight);
the child's peak RSS (VmHWM, read by the child itself) is reported as a multiple of the body
size and of a child that only imports the connector, so the figures are same-run ratios, and
8 bodies against 1 is checked against TARGET_RATIO.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CAP = 16 * 1024 * 1024
CONCURRENCY = 8
TOKEN = "bench-token"
# Eight capped bodies in flight may cost at most this many times one body (the memory budget,
# at its default, lets one capped body be parsed at a time).
TARGET_RATIO = 1.5

CHILD = r"""
import json, sys
from datetime import date
from connector.config import parse_config
from connector.extraction.run import extract
with open(sys.argv[1]) as handle:
    document = json.load(handle)
config = parse_config(document, env={"BENCH_TOKEN": sys.argv[2]})
rows, code = 0, 0
if sys.argv[3] == "run":
    summary = extract(config, date(2026, 1, 1), progress=False, allow_backdate=True)
    rows, code = summary.rows, int(summary.exit_code)
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"rss": rss, "rows": rows, "exit": code}))
"""


def capped_body(name: str) -> bytes:
    """A listModelVersions body of summary objects, as large as fits under CAP."""
    entry = {
        "id": "a1b2c3d4-0000-4000-8000-{:012d}",
        "name": name,
        "version": "v{}",
        "created_at": "2025-06-01T12:00:00Z",
        "download_count": 123456,
        "framework": "pytorch",
        "is_public": True,
        "origin": {"source": "hub", "commit": "0123456789abcdef"},
    }
    template = json.dumps(entry)
    entries: list[str] = []
    size = 1024 + len(template)
    while size < CAP:
        i = len(entries)
        entries.append(template.replace("{:012d}", f"{i:012d}").replace("v{}", f"v{i}"))
        size += len(entries[-1]) + 2
    entries.pop()
    versions = ", ".join(entries)
    body = f'{{"name": "{name}", "latest": {entries[0]}, "versions": [{versions}]}}'
    data = body.encode()
    assert len(data) < CAP, len(data)
    return data


# Every body names the model it answers (the connector refuses one that names another): built
# once for this name, then given the requested `org/model`, of the same length, per request.
NAMED = "org-00/model-0000"


def serve(body: bytes) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            org, model = self.path.split("/")[4:7:2]  # /api/v1/org/{org}/models/{model}/...
            answer = body.replace(NAMED.encode(), f"{org}/{model}".encode())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def run_connector(url: str, models: int, output: Path, mode: str = "run") -> dict[str, Any]:
    document = {
        "registry": {
            "base_url": url,
            "token": "${BENCH_TOKEN}",
            "concurrency": CONCURRENCY,
            "timeout_seconds": 120,
        },
        "orgs": [{"name": "org-00", "models": [f"model-{m:04d}" for m in range(models)]}],
        "output": {"uri": str(output / "out")},
    }
    config = output / f"bench-config-{models}.json"
    config.write_text(json.dumps(document))
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(config), TOKEN, mode],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if result["exit"] != 0:
        raise SystemExit(f"extract failed: {completed.stdout}\n{completed.stderr}")
    return result


def main() -> int:
    body = capped_body(NAMED)
    server, url = serve(body)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            base = run_connector(url, 1, Path(tmp), "import-only")["rss"]
            one = run_connector(url, 1, Path(tmp))
            eight = run_connector(url, 8, Path(tmp))
    finally:
        server.shutdown()
        server.server_close()
    mib = 1024 * 1024
    print(
        f"memory: body {len(body) / mib:.1f} MiB ({one['rows']} rows), concurrency {CONCURRENCY}; "
        f"import-only child {base / mib:.0f} MiB"
    )
    for label, result in (("1 body", one), ("8 bodies", eight)):
        grown = result["rss"] - base
        print(
            f"  {label:>8}: peak RSS {result['rss'] / mib:.0f} MiB, "
            f"{grown / len(body):.1f}x the body above import-only"
        )
    ratio = (eight["rss"] - base) / (one["rss"] - base)
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"  8 bodies / 1 body peak (above import-only): {ratio:.2f}x "
        f"(target <= {TARGET_RATIO}x, memory bounded by registry.memory_budget_bytes "
        f"rather than by concurrency: {verdict})"
    )
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
