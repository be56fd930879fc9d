"""Options shared by several commands, defined once as decorators."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from connector.redaction import printable

if TYPE_CHECKING:
    from connector.extraction.summary import RunSummary

F = TypeVar("F", bound=Callable[..., Any])


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


def write_metrics_or_warn(path: str, summary: RunSummary) -> None:
    """Write the metrics textfile; a path that cannot be written is a warning, not a failure:
    the run's outcome (perhaps a published snapshot) and its exit code stand."""
    from connector.extraction.metrics import write_metrics

    try:
        write_metrics(path, summary)
    except OSError as exc:
        click.echo(
            f"Warning: could not write the metrics file {printable(path)}: "
            f"{exc.strerror or exc}; check that its directory exists and may be written "
            "(the run's outcome is unchanged)",
            err=True,
        )
