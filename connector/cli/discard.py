"""`connector discard`: remove a held snapshot for good."""

from __future__ import annotations

import sys
from datetime import date

import click

from connector.cli.options import (
    decision_config,
    echo_summary,
    held_day_options,
    logging_options,
    summary_format_option,
)


@click.command()
@held_day_options
@click.option(
    "--run",
    "run_id",
    required=True,
    help="The held run to remove (`connector status` lists the held runs).",
)
@summary_format_option
@logging_options
def discard(
    config_path: str,
    output: str | None,
    day: date,
    run_id: str,
    summary_format: str,
    log_level: str,
    log_format: str,
) -> None:
    """Remove a held snapshot for good; the published snapshots are unchanged."""
    from connector.extraction.decide import discard as discard_held

    config = decision_config(config_path, log_level, log_format)
    summary = discard_held(config, day, run_id, output)
    echo_summary(summary, summary_format)
    sys.exit(int(summary.exit_code))
