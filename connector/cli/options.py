"""Options shared by several commands, defined once as decorators."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from connector.config import Config, load_config
from connector.logs import add_secrets, configure_logging
from connector.redaction import printable

if TYPE_CHECKING:
    from connector.extraction.summary import RunSummary

F = TypeVar("F", bound=Callable[..., Any])

EARLIEST_DATE = date(2000, 1, 1)  # before any registry this connector reads existed
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class DayType(click.ParamType[date]):
    """A snapshot day, the same for every command that takes one (extract, publish, report).

    Only YYYY-MM-DD (not 20261101 or 2026-W01-1, which `fromisoformat` also takes), a real
    day, from 2000-01-01 to tomorrow (UTC). Whether a date may be written is the wrong-date
    guard's call; this only refuses what cannot be meant."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        text = str(value)
        try:
            day = date.fromisoformat(text) if _ISO_DATE.fullmatch(text) else None
        except ValueError:
            self.fail(f"{text!r} is not a day of the calendar", param, ctx)
        if day is None:
            self.fail(f"expected YYYY-MM-DD, got {text!r}", param, ctx)
        latest = datetime.now(UTC).date() + timedelta(days=1)
        if not EARLIEST_DATE <= day <= latest:
            sane = f"{EARLIEST_DATE.isoformat()}..{latest.isoformat()}"
            self.fail(f"{text} is outside {sane}", param, ctx)
        return day


DAY = DayType()


class RatioType(click.FloatRange):
    """A share from 0 to 1. `nan` passes click's range check (every comparison with it is
    false) and would then pass every publish guard, so it is refused by name."""

    name = "ratio"

    def __init__(self) -> None:
        super().__init__(0, 1)

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        ratio: float = super().convert(value, param, ctx)
        if math.isnan(ratio):
            self.fail(f"{value!r} is not a number from 0 to 1", param, ctx)
        return ratio


RATIO = RatioType()


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


summary_format_option = click.option(
    "--summary-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="The summary on stdout as text or JSON.",
)


def echo_summary(summary: RunSummary, summary_format: str) -> None:
    """The summary on stdout, as `--summary-format` asks."""
    if summary_format == "json":
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(summary.render_text())


def held_day_options(function: F) -> F:
    """--config, --output and --date: which held snapshot `accept` and `discard` decide on."""
    function = click.option(
        "--date", "day", required=True, type=DAY, help="The held snapshot's date."
    )(function)
    function = click.option("--output", "output", help="Dataset root; overrides output.uri.")(
        function
    )
    return config_option(function)


def decision_config(config_path: str, log_level: str, log_format: str) -> Config:
    """The config of `accept` or `discard`, with logging set up and its secrets scrubbed; no
    token's variable is needed (a decision never calls the registry)."""
    configure_logging(log_level, log_format)
    config = load_config(config_path, need_tokens=False)
    add_secrets(config.secrets())
    return config
