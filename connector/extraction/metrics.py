"""A Prometheus textfile (node_exporter's textfile collector) describing the last run."""

from __future__ import annotations

import os
import time
from pathlib import Path

from connector.atomic import write_atomic
from connector.extraction.summary import RunSummary

_PREFIX = "model_versions_connector"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Exact: `:g` keeps 6 digits, which turns a Unix timestamp into 1.79594e+09."""
    return str(value) if isinstance(value, int) else repr(float(value))


def render_metrics(summary: RunSummary, now: float | None = None) -> str:
    """The text exposition format for one run's summary."""
    now = time.time() if now is None else now
    labels = f'output="{_escape(summary.output_uri)}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {_PREFIX}_{name} {help_text}")
        lines.append(f"# TYPE {_PREFIX}_{name} {kind}")
        for extra, value in samples:
            all_labels = ",".join(part for part in (labels, extra) if part)
            lines.append(f"{_PREFIX}_{name}{{{all_labels}}} {_number(value)}")

    metric("last_run_timestamp_seconds", "gauge", "When the last run finished.", [("", now)])
    if summary.published:
        metric(
            "last_success_timestamp_seconds",
            "gauge",
            "When a run last published a snapshot.",
            [("", now)],
        )
    metric("last_exit_code", "gauge", "Exit code of the last run.", [("", int(summary.exit_code))])
    metric(
        "targets",
        "gauge",
        "Targets of the last run by outcome.",
        [
            ('outcome="succeeded"', summary.targets_succeeded),
            ('outcome="failed"', summary.targets_failed),
        ],
    )
    metric("rows", "gauge", "Rows written by the last run.", [("", summary.rows)])
    metric(
        "published",
        "gauge",
        "1 if the last run published its snapshot.",
        [("", 1 if summary.published else 0)],
    )
    metric(
        "requests",
        "gauge",
        "HTTP requests of the last run by status.",
        [(f'status="{_escape(k)}"', v) for k, v in sorted(summary.requests.items())],
    )
    metric(
        "duration_seconds", "gauge", "Wall time of the last run.", [("", summary.elapsed_seconds)]
    )
    return "\n".join(lines) + "\n"


def write_metrics(path: str | os.PathLike[str], summary: RunSummary) -> None:
    """Write with `write_atomic`, so the collector never reads half a file.

    The last-success timestamp must survive failed runs, so it is carried over from the
    previous file when this run did not publish.
    """
    target = Path(path)
    text = render_metrics(summary)
    if not summary.published and target.is_file():
        previous = [
            line
            for line in target.read_text(encoding="utf-8").splitlines()
            if "last_success_timestamp_seconds" in line
        ]
        text += "\n".join(previous) + ("\n" if previous else "")
    write_atomic(target, text)
