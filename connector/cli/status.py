"""`connector status`: the dataset's health on one screen, and a probe for monitoring."""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import click

from connector.cli.datasets import dataset_store, storage_option
from connector.errors import ExitCode

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_age(text: str) -> timedelta:
    """'26h', '2d', '90m' as a duration; ValueError for anything else."""
    match = _AGE.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as 26h, 2d or 90m, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _max_age(_: click.Context, __: click.Parameter, value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_age(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--data", metavar="URI", help="Dataset root (the extractor's output.uri).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file whose output.uri is the dataset (--data wins); needs no token.",
)
@storage_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One screen of text, or a JSON object.",
)
@click.option(
    "--max-age",
    metavar="AGE",
    callback=_max_age,
    help="Exit 11 when the newest snapshot was observed longer ago than AGE (26h, 2d, 90m), "
    "or there is none: a probe for monitoring.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=7,
    show_default=True,
    help="Show the last run of this many of the most recent days with runs.",
)
def status(
    data: str | None,
    config_path: Path | None,
    storage_options: dict[str, str],
    fmt: str,
    max_age: timedelta | None,
    days: int,
) -> None:
    """The dataset's health: days, gaps, last runs, held days, age (exit 11: too old).

    First and last snapshot, the days missing between them, the last run of each recent day,
    held snapshots, snapshots published with overridden checks, and how long ago the newest
    snapshot was observed. Reads manifests and run records only, never data."""
    from connector.checks.screen import age_text, render_status
    from connector.checks.status import status as dataset_status

    found = dataset_status(dataset_store(data, config_path, storage_options), recent_days=days)
    if fmt == "json":
        click.echo(json.dumps(found.to_dict(), indent=2))
    else:
        click.echo(render_status(found))
    if max_age is not None and found.older_than(max_age):
        age = "unknown" if found.age is None else age_text(found.age)
        click.echo(
            f"Error: the newest snapshot is older than --max-age {age_text(max_age)} (age: {age})",
            err=True,
        )
        sys.exit(int(ExitCode.STALE))
