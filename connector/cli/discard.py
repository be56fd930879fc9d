"""`connector discard`: remove a held snapshot for good."""

from __future__ import annotations

import sys
from datetime import date

import click

from connector.cli.options import (
    DAY,
    config_option,
    echo_summary,
    logging_options,
    summary_format_option,
)
from connector.config import load_config
from connector.logs import add_secrets, configure_logging


@click.command()
@config_option
@click.option("--output", "output", help="Dataset root; overrides output.uri.")
@click.option("--date", "day", required=True, type=DAY, help="The held snapshot's date.")
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

    configure_logging(log_level, log_format)
    config = load_config(config_path, need_tokens=False)  # the registry is never called
    add_secrets(config.secrets())
    summary = discard_held(config, day, run_id, output)
    echo_summary(summary, summary_format)
    sys.exit(int(summary.exit_code))
