"""A Prometheus textfile (node_exporter's textfile collector) describing the last run.

The exposition format (escaping, HELP/TYPE lines, number formatting) is prometheus_client's:
its numbers are exact (`repr` digits, Go-style exponent: 1795940123.25 is written
1.79594012325e+09, never rounded the way `%g` would round it). The file is written with
`write_atomic` rather than `prometheus_client.write_to_textfile`, which neither fsyncs nor
removes every kind of leftover; the bytes are the same (`generate_latest`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connector.atomic import write_atomic
from connector.checks.document import read_checks
from connector.extraction.summary import RunSummary
from connector.loggers import get_logger

log = get_logger(__name__)

PREFIX = "model_versions_connector"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"

# A carried-over last-success sample: its labels and its value.
Sample = tuple[dict[str, str], float]


def build_registry(
    summary: RunSummary, now: float | None = None, carried: list[Sample] | None = None
) -> CollectorRegistry:
    """One run's gauges; `carried` are the last-success samples of an earlier file, used when
    this run did not publish."""
    now = time.time() if now is None else now
    registry = CollectorRegistry(auto_describe=True)
    output = {"output": summary.output_uri}

    def gauge(name: str, help_text: str, *extra_labels: str) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", help_text, ["output", *extra_labels], registry=registry)

    gauge("last_run_timestamp_seconds", "When the last run finished.").labels(**output).set(now)
    last_success = gauge("last_success_timestamp_seconds", "When a run last published a snapshot.")
    if summary.published:
        last_success.labels(**output).set(now)
    else:
        for labels, value in carried or []:
            last_success.labels(**labels).set(value)
    gauge("last_exit_code", "Exit code of the last run.").labels(**output).set(
        int(summary.exit_code)
    )
    targets = gauge("targets", "Targets of the last run by outcome.", "outcome")
    targets.labels(**output, outcome="succeeded").set(summary.targets_succeeded)
    targets.labels(**output, outcome="failed").set(summary.targets_failed)
    gauge("rows", "Rows written by the last run.").labels(**output).set(summary.rows)
    gauge("published", "1 if the last run published its snapshot.").labels(**output).set(
        1 if summary.published else 0
    )
    requests = gauge("requests", "HTTP requests of the last run by status.", "status")
    for status, count in sorted(summary.requests.items()):
        requests.labels(**output, status=status).set(count)
    gauge("duration_seconds", "Wall time of the last run.").labels(**output).set(
        summary.elapsed_seconds
    )
    gauge("held", "1 if a check held the last run's snapshot (kept under _held/).").labels(
        **output
    ).set(1 if summary.held else 0)
    _check_gauges(gauge, output, summary)
    return registry


def _check_gauges(gauge: Callable[..., Gauge], output: dict[str, str], summary: RunSummary) -> None:
    """One series per check of the last publish: its measured value, its threshold, and
    whether it failed (a check without a value, skipped on a first day, has no value series)."""
    checks = read_checks({"checks": summary.checks}, "the summary")
    if checks is None:
        return
    value = gauge("check_value", "The value a publish check measured.", "check")
    threshold = gauge("check_threshold", "The threshold of a publish check.", "check")
    failed = gauge(
        "check_failed", "1 if a publish check failed (held, or overridden by accept).", "check"
    )
    for result in checks.results:
        labels = {**output, "check": result.name}
        if result.value is not None:
            value.labels(**labels).set(result.value)
        if result.threshold is not None:
            threshold.labels(**labels).set(result.threshold)
        failed.labels(**labels).set(1 if result.failed else 0)


def render_metrics(
    summary: RunSummary, now: float | None = None, carried: list[Sample] | None = None
) -> str:
    """The text exposition format for one run's summary."""
    return generate_latest(build_registry(summary, now, carried)).decode("utf-8")


def last_success_samples(text: str) -> list[Sample]:
    """The last-success samples of an earlier textfile (ValueError if it is not one)."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == LAST_SUCCESS and set(sample.labels) == {"output"}
    ]


def write_metrics(path: str | os.PathLike[str], summary: RunSummary) -> None:
    """Write with `write_atomic`, so the collector never reads half a file.

    The last-success timestamp must survive failed runs, so it is carried over from the
    previous file when this run did not publish (a previous file that cannot be read or parsed
    carries nothing, with a warning: the alert on a stale success is then the right one).
    """
    target = Path(path)
    carried: list[Sample] = []
    if not summary.published and target.is_file():
        try:
            carried = last_success_samples(target.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("cannot carry the last success over from %s: %s", target, exc)
    write_atomic(target, render_metrics(summary, carried=carried))
