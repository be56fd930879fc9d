"""The Prometheus textfile: exact numbers, last-success carried over, written atomically.

Read back with prometheus_client's parser, as Prometheus (via node_exporter) reads it."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers import prom_key, prom_samples

from connector.errors import ExitCode, RunOutcome
from connector.extraction.metrics import render_metrics, write_metrics
from connector.extraction.summary import RunSummary

OUTPUT = "/data"


def summary(**fields: Any) -> RunSummary:
    base = RunSummary(run_id="r", snapshot_date="2026-11-29", output_uri=OUTPUT, started_at="")
    return dataclasses.replace(base, **fields)


def test_numbers_are_exact() -> None:
    """`%g` keeps 6 digits: a Unix timestamp would read back as 1795940000."""
    text = render_metrics(
        summary(rows=12_345_678, published=True, elapsed_seconds=2.718281), now=1_795_940_123.25
    )
    samples = prom_samples(text)
    assert samples[prom_key("rows", output=OUTPUT)] == 12_345_678
    assert samples[prom_key("last_run_timestamp_seconds", output=OUTPUT)] == 1_795_940_123.25
    assert samples[prom_key("last_success_timestamp_seconds", output=OUTPUT)] == 1_795_940_123.25
    assert samples[prom_key("duration_seconds", output=OUTPUT)] == 2.718281


def test_every_gauge_of_the_run_is_there() -> None:
    run = summary(
        published=True,
        run_outcome=RunOutcome(targets_failed=True),  # exit code 3
        targets_attempted=7,
        targets_succeeded=5,  # so 2 failed
        requests={"200": 9, "429": 3},
    )
    samples = prom_samples(render_metrics(run, now=1.0))
    assert samples == {
        prom_key("last_run_timestamp_seconds", output=OUTPUT): 1.0,
        prom_key("last_success_timestamp_seconds", output=OUTPUT): 1.0,
        prom_key("last_exit_code", output=OUTPUT): int(ExitCode.PARTIAL),
        prom_key("targets", output=OUTPUT, outcome="succeeded"): 5,
        prom_key("targets", output=OUTPUT, outcome="failed"): 2,
        prom_key("rows", output=OUTPUT): 0,
        prom_key("published", output=OUTPUT): 1,
        prom_key("requests", output=OUTPUT, status="200"): 9,
        prom_key("requests", output=OUTPUT, status="429"): 3,
        prom_key("duration_seconds", output=OUTPUT): 0.0,
        prom_key("held", output=OUTPUT): 0,
    }


def test_each_check_has_its_value_threshold_and_verdict() -> None:
    checks = {
        "verdict": "held",
        "previous_snapshot": None,
        "results": [
            {"name": "counts_decreased", "verdict": "fail", "value": 0.031, "threshold": 0.01},
            {"name": "row_count", "verdict": "skipped", "value": None, "threshold": 0.1},
            {"name": "empty", "verdict": "pass", "value": 120, "threshold": None},
        ],
    }
    run = summary(checks=checks, held="/data/_held/2026-11-29/r", run_outcome=RunOutcome(held=True))
    samples = prom_samples(render_metrics(run, now=1.0))
    assert samples[prom_key("held", output=OUTPUT)] == 1
    assert samples[prom_key("last_exit_code", output=OUTPUT)] == int(ExitCode.HELD)
    series = {
        (name.removeprefix("model_versions_connector_"), dict(labels)["check"]): value
        for (name, labels), value in samples.items()
        if "check" in dict(labels)
    }
    assert series == {
        ("check_value", "counts_decreased"): 0.031,
        ("check_threshold", "counts_decreased"): 0.01,
        ("check_failed", "counts_decreased"): 1,
        ("check_threshold", "row_count"): 0.1,  # skipped: no value to report
        ("check_failed", "row_count"): 0,
        ("check_value", "empty"): 120,
        ("check_failed", "empty"): 0,
    }


def test_a_label_value_with_quotes_and_newlines_reads_back_as_written() -> None:
    odd = 'C:\\data\\"night"\nrun'
    samples = prom_samples(render_metrics(summary(output_uri=odd), now=1.0))
    assert samples[prom_key("published", output=odd)] == 0


def test_last_success_survives_a_failed_run(tmp_path: Path) -> None:
    path = tmp_path / "connector.prom"
    write_metrics(path, summary(published=True))
    good = prom_samples(path.read_text())[prom_key("last_success_timestamp_seconds", output=OUTPUT)]
    write_metrics(path, summary(published=False, run_outcome=RunOutcome(guard_failed=True)))
    samples = prom_samples(path.read_text())
    assert samples[prom_key("last_success_timestamp_seconds", output=OUTPUT)] == good
    assert samples[prom_key("last_exit_code", output=OUTPUT)] == 8
    assert samples[prom_key("published", output=OUTPUT)] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["connector.prom"]


def test_a_run_that_never_published_has_no_last_success() -> None:
    samples = prom_samples(render_metrics(summary(published=False), now=1.0))
    assert not [key for key in samples if key[0].endswith("last_success_timestamp_seconds")]


def test_a_previous_file_that_is_not_a_textfile_carries_nothing_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "connector.prom"
    path.write_text("model_versions_connector_last_success_timestamp_seconds{ garbage\n")
    logger = logging.getLogger("connector.extraction.metrics")
    logger.addHandler(caplog.handler)  # the connector's loggers do not propagate
    try:
        write_metrics(path, summary(published=False))
    finally:
        logger.removeHandler(caplog.handler)
    samples = prom_samples(path.read_text())
    assert samples[prom_key("published", output=OUTPUT)] == 0
    assert not [key for key in samples if key[0].endswith("last_success_timestamp_seconds")]
    assert "cannot carry the last success over" in caplog.text
