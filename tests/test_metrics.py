"""The Prometheus textfile: exact numbers, last-success carried over, written atomically."""

from __future__ import annotations

from pathlib import Path

from connector.errors import ExitCode
from connector.extraction.metrics import render_metrics, write_metrics
from connector.extraction.summary import RunSummary


def summary(**fields: object) -> RunSummary:
    base = RunSummary(run_id="r", snapshot_date="2026-11-29", output_uri="/data", started_at="")
    for name, value in fields.items():
        setattr(base, name, value)
    return base


def test_numbers_are_exact() -> None:
    text = render_metrics(
        summary(rows=12_345_678, published=True, elapsed_seconds=2.718281), now=1_795_940_123.25
    )
    assert 'model_versions_connector_rows{output="/data"} 12345678' in text
    assert (
        'model_versions_connector_last_run_timestamp_seconds{output="/data"} 1795940123.25' in text
    )
    assert 'model_versions_connector_duration_seconds{output="/data"} 2.718281' in text


def test_last_success_survives_a_failed_run(tmp_path: Path) -> None:
    path = tmp_path / "connector.prom"
    write_metrics(path, summary(published=True))
    good = [line for line in path.read_text().splitlines() if "last_success" in line]
    write_metrics(path, summary(published=False, exit_code=ExitCode.NOT_PUBLISHED))
    text = path.read_text()
    assert all(line in text.splitlines() for line in good)
    assert 'model_versions_connector_last_exit_code{output="/data"} 8' in text
    assert 'model_versions_connector_published{output="/data"} 0' in text
    assert not list(tmp_path.glob(".*.tmp"))
