"""`connector report`: downloads gained over a window, as a table, CSV, JSON or an HTML page.

Thin on purpose: parse the options, call `connector.reporting.analytics.compute_report`, render,
write. Errors are the connector's exceptions; the CLI group turns them into exit codes.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from connector.cli.datasets import dataset_store, storage_option
from connector.cli.options import DAY
from connector.dataset.objectstore import endpoint_hint
from connector.errors import ConfigError, OutputError
from connector.redaction import printable
from connector.reporting.analytics import GROUPINGS, compute_report
from connector.reporting.render import FORMATS, render, write_report
from connector.reporting.window import MAX_DAYS


def _output_file(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """`-o ""`, `-o .` or `-o dir/..` name no file: refuse them here, not deep in a rename."""
    if value is not None and value.name in ("", ".", ".."):
        raise click.BadParameter(f"{printable(str(value))!r} names a directory, not a file")
    return value


def _split_model_filters(
    orgs: tuple[str, ...], models: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`--model org/model` (as the report and the summaries print models) becomes an org and a
    model filter. The filters combine as org AND model, so pairs are accepted only where that
    matches exactly the pairs given: one org for all, or one model for all, and not mixed with
    --org or bare slugs (which would widen or narrow them silently)."""
    pairs = [value.partition("/") for value in models if "/" in value]
    if not pairs:
        return orgs, models
    if len(pairs) != len(models) or orgs:
        raise click.UsageError(
            "--model ORG/MODEL cannot be combined with --org or a bare --model slug; "
            "use one form or the other"
        )
    for org, _, model in pairs:
        if not org or not model or "/" in model:
            raise click.UsageError(f"--model {org}/{model}: expected ORG/MODEL or a model slug")
    pair_orgs = tuple(dict.fromkeys(org for org, _, _ in pairs))
    pair_models = tuple(dict.fromkeys(model for _, _, model in pairs))
    if len(pair_orgs) > 1 and len(pair_models) > 1:
        raise click.UsageError(
            "--model ORG/MODEL values naming several orgs and several models would also match "
            "their other combinations; run one report per org, or give bare model slugs"
        )
    return pair_orgs, pair_models


def _memory_limit(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int:
    from connector.reporting.engine import parse_memory_limit

    try:
        return parse_memory_limit(value)
    except ConfigError as exc:
        raise click.BadParameter("; ".join(exc.problems)) from exc


@click.command("report")
@click.option("--data", metavar="URI", help="Dataset root (the extractor's output.uri).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file whose output.uri is the dataset (--data wins); its "
    "output.storage_options apply to an s3:// dataset either way.",
)
@storage_option
@click.option(
    "--days",
    type=click.IntRange(1, MAX_DAYS),
    help=f"Latest snapshot against the latest one at least N days older (1 to {MAX_DAYS}).  "
    "[default: 1]",
)
@click.option("--start", type=DAY, help="Window start (YYYY-MM-DD); not with --days.")
@click.option("--end", type=DAY, help="Window end (YYYY-MM-DD, default: latest); needs --start.")
@click.option(
    "--by", type=click.Choice(GROUPINGS), default="model", show_default=True, help="Group rows by."
)
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Keep the K groups that gained most; 0 keeps all.",
)
@click.option("--org", "orgs", multiple=True, metavar="ORG", help="Only this org (repeatable).")
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="MODEL",
    help="Only this model: a slug, or ORG/MODEL as the report prints it (repeatable).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for a terminal, csv, json (a list of objects), or html (one self-contained page).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_output_file,
    help="Write to FILE (atomically) instead of stdout.",
)
@click.option(
    "--memory-limit",
    metavar="SIZE",
    callback=_memory_limit,
    help="Memory the query engine may use before spilling to disk, e.g. 2GiB, 512MB or 25% "
    "(of RAM).  [default: 50% of RAM, at most 8GiB]",
)
def report(
    data: str | None,
    config_path: Path | None,
    storage_options: dict[str, str],
    days: int | None,
    start: date | None,
    end: date | None,
    by: str,
    top: int,
    orgs: tuple[str, ...],
    models: tuple[str, ...],
    fmt: str,
    output: Path | None,
    memory_limit: int,
) -> None:
    """Downloads gained per version, model, org or framework between two snapshots."""
    if days is not None and (start is not None or end is not None):
        raise click.UsageError("--days cannot be combined with --start/--end")
    if end is not None and start is None:
        raise click.UsageError("--end needs --start")
    orgs, models = _split_model_filters(orgs, models)
    location = dataset_store(data, config_path, storage_options)
    try:
        result = compute_report(
            location,
            days=days,
            start=start,
            end=end,
            by=by,
            top=top or None,
            org=orgs,
            model=models,
            memory_limit=memory_limit,
        )
    except OutputError as exc:
        hint = endpoint_hint(exc) if not location.is_local else ""
        if not hint:
            raise
        raise OutputError(f"{exc}{hint}") from exc
    if fmt in ("csv", "json"):  # the table and the page show their notes themselves
        for note in result.notes:
            click.echo(f"note: {printable(note)}", err=True)
    if output is None:
        click.echo(render(result, fmt), nl=False)
    else:
        write_report(result, output, fmt)
        click.echo(f"wrote {printable(str(output))}", err=True)
