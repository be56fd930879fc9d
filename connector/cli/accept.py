"""`connector accept`: publish a held snapshot as it was observed, its checks overridden."""

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
    help="The held run to publish (needed when several runs of the date are held; "
    "`connector status` lists them).",
)
@click.option(
    "--reason", help="Why it is accepted, recorded with the override (e.g. 'org retired')."
)
@summary_format_option
@logging_options
def accept(
    config_path: str,
    output: str | None,
    day: date,
    run_id: str | None,
    reason: str | None,
    summary_format: str,
    log_level: str,
    log_format: str,
) -> None:
    """Publish a held snapshot as it was observed, its failing checks overridden.

    The failing checks are recorded in the manifest as overridden by this user on this host
    (and --reason); `connector status` lists the held snapshots."""
    from connector.extraction.decide import accept as accept_held

    config = decision_config(config_path, log_level, log_format)
    summary = accept_held(config, day, run_id, output, reason=reason)
    echo_summary(summary, summary_format)
    sys.exit(int(summary.exit_code))
