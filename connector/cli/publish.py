"""`connector publish`: merge the staged shards of one date into its snapshot and publish it."""

from __future__ import annotations

import json
import sys
from datetime import date

import click

from connector.cli.options import DAY, RATIO, config_option, logging_options
from connector.config import Config, load_config
from connector.logs import add_secrets, configure_logging


@click.command()
@config_option
@click.option("--output", "output", help="Dataset root; overrides output.uri.")
@click.option(
    "--date",
    "day",
    required=True,
    type=DAY,
    help="Snapshot date YYYY-MM-DD the shards were staged for.",
)
@click.option(
    "--shards",
    "shards",
    required=True,
    type=click.IntRange(1, 4096),
    help="How many shards the snapshot was split into (N of `extract --shard K/N`).",
)
@click.option(
    "--min-success-ratio",
    type=RATIO,
    help="Publish only if this share of all shards' targets succeeded; overrides "
    "output.min_success_ratio.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Publish even if the shards leave out models the date's partition holds "
    "(they are dropped from it).",
)
@click.option(
    "--summary-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="The summary on stdout as text or JSON.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False),
    help="Write a Prometheus textfile about this publish (atomically).",
)
@logging_options
def publish(
    config_path: str,
    output: str | None,
    day: date,
    shards: int,
    min_success_ratio: float | None,
    replace: bool,
    summary_format: str,
    metrics_file: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Merge the staged shards of one date into its snapshot and publish it."""
    from connector.cli.options import write_metrics_or_warn
    from connector.extraction.publish import publish as run_publish

    configure_logging(log_level, log_format)
    config: Config = load_config(config_path)
    add_secrets(config.secrets())
    summary = run_publish(
        config, day, shards, output, min_success_ratio=min_success_ratio, replace=replace
    )
    if metrics_file:
        write_metrics_or_warn(metrics_file, summary)
    if summary_format == "json":
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(summary.render_text())
    sys.exit(int(summary.exit_code))
