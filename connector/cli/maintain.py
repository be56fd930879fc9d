"""`connector maintain`: compact and vacuum the Delta table of `output.format: delta`."""

from __future__ import annotations

import json

import click

from connector.cli.options import config_option, logging_options
from connector.config import load_output_settings, validate_output
from connector.logs import configure_logging


@click.command()
@config_option
@click.option("--output", "output", help="Dataset root; overrides output.uri.")
@click.option(
    "--optimize",
    is_flag=True,
    help="Compact each day's small files into larger ones (one new table version).",
)
@click.option(
    "--vacuum-days",
    type=int,
    help="Delete the files no table version of the last N days needs (also files a killed "
    "publish left); time travel to older versions stops working.",
)
@click.option(
    "--summary-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="What was done, on stdout as text or JSON.",
)
@logging_options
def maintain(
    config_path: str,
    output: str | None,
    optimize: bool,
    vacuum_days: int | None,
    summary_format: str,
    log_level: str,
    log_format: str,
) -> None:
    """Compact and vacuum the Delta table (output.format: delta) under the output lock."""
    from connector.extraction.maintenance import maintain as run_maintain

    configure_logging(log_level, log_format)
    settings = load_output_settings(config_path)  # the registry token is not needed here
    if output:
        settings = settings.model_copy(update={"uri": validate_output({"uri": output}).uri})
    done = run_maintain(settings, optimize=optimize, vacuum_days=vacuum_days)
    if summary_format == "json":
        click.echo(json.dumps(done, indent=2))
        return
    click.echo(f"table     {done['table']}")
    click.echo(f"version   {done['version_before']} -> {done['version_after']}")
    if "optimize" in done:
        compacted = done["optimize"]
        click.echo(
            f"optimize  {compacted['files_removed']} file(s) compacted into "
            f"{compacted['files_added']}"
        )
    if "vacuum" in done:
        vacuumed = done["vacuum"]
        click.echo(
            f"vacuum    {vacuumed['files_removed']} file(s) deleted; time travel reaches back "
            f"{vacuumed['retention_days']} day(s)"
        )
