"""The `connector` command line: a thin shell over the library API.

Each command parses options, calls one library function, prints, and exits. Exceptions become
exit codes in exactly one place, `ConnectorGroup.invoke`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

import click

from connector._version import __version__
from connector.config import Config, load_config
from connector.errors import ConnectorError, ExitCode
from connector.logs import add_secrets, configure_logging
from connector.report_cli import report
from connector.simulator_cli import simulate

F = TypeVar("F", bound=Callable[..., Any])


class ConnectorGroup(click.Group):
    """Maps every ConnectorError to its exit code and an `Error:` line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConnectorError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(int(exc.exit_code))


def logging_options(function: F) -> F:
    """--log-level and --log-format, shared by the commands that log."""
    function = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log lines on stderr as text or as JSON objects.",
    )(function)
    return click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        default="INFO",
        show_default=True,
        help="Least severe log level shown.",
    )(function)


config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="YAML configuration file (see sample_configs/).",
)


@click.group(cls=ConnectorGroup)
@click.version_option(__version__, prog_name="connector")
def main() -> None:
    """Snapshot a model registry's version lists and download counts into Parquet."""


@main.command()
@config_option
def validate(config_path: str) -> None:
    """Check a config file without calling the API (exit 2 on problems)."""
    config = load_config(config_path)
    for warning in config.warnings:
        click.echo(f"Warning: {warning}", err=True)
    targets = config.targets()
    click.echo(
        f"OK: {config_path}: {len(config.orgs)} org(s), {len(targets)} model(s), "
        f"registry {config.registry.base_url}, output {config.output.uri}"
    )


def _parse_date(_: click.Context, __: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


@main.command()
@config_option
@click.option("--output", "output", help="Dataset root; overrides output.uri.")
@click.option(
    "--date",
    "day",
    callback=_parse_date,
    help="Snapshot date YYYY-MM-DD (default: today, UTC).",
)
@click.option(
    "--min-success-ratio",
    type=click.FloatRange(0, 1),
    help="Publish only if this share of targets succeeded; overrides output.min_success_ratio.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: only when stderr is a terminal).",
)
@click.option(
    "--summary-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="The end-of-run summary on stdout as text or JSON.",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False),
    help="Write a Prometheus textfile about this run (atomically).",
)
@logging_options
def extract(
    config_path: str,
    output: str | None,
    day: date | None,
    min_success_ratio: float | None,
    progress: bool | None,
    summary_format: str,
    metrics_file: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Fetch every configured model's versions and publish the day's snapshot."""
    from connector.extraction import extract as run_extract
    from connector.metrics import write_metrics

    configure_logging(log_level, log_format)
    config: Config = load_config(config_path)
    add_secrets(config.secrets())
    for warning in config.warnings:
        click.echo(f"Warning: {warning}", err=True)
    summary = run_extract(
        config, day, output, min_success_ratio=min_success_ratio, progress=progress
    )
    if metrics_file:
        write_metrics(metrics_file, summary)
    if summary_format == "json":
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(summary.render_text())
    sys.exit(int(summary.exit_code))


# Commands that live in their own modules, next to what they drive.
main.add_command(simulate)
main.add_command(report)

__all__ = ["ExitCode", "main"]
