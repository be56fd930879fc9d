"""`connector extract`: fetch every configured model's versions and publish the day's snapshot."""

from __future__ import annotations

import gc
import json
import sys
from datetime import date

import click

from connector.cli.options import DAY, RATIO, config_option, logging_options
from connector.config import Config, load_config
from connector.errors import ConfigError
from connector.logs import add_secrets, configure_logging
from connector.redaction import printable

_YOUNG_OBJECTS = 10_000  # the GC's first threshold during a run (see `extract`)


def _parse_shard(
    _: click.Context, __: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    from connector.extraction.sharding import parse_shard

    if value is None:
        return None
    try:
        return parse_shard(value)
    except ConfigError as exc:
        raise click.BadParameter(exc.problems[0].removeprefix("--shard: ")) from None


def _parse_processes(_: click.Context, __: click.Parameter, value: str) -> int:
    if value == "auto":
        from connector.extraction.processes import cpu_count

        return cpu_count()
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"expected a number (1 or more) or auto, got {value!r}")
    return int(value)


@click.command()
@config_option
@click.option("--output", "output", help="Dataset root; overrides output.uri.")
@click.option(
    "--date",
    "day",
    type=DAY,
    help="Snapshot date YYYY-MM-DD (default: today, UTC); today or yesterday unless "
    "--allow-backdate.",
)
@click.option(
    "--allow-backdate",
    is_flag=True,
    help="Allow a --date before yesterday (UTC): file today's counts under that past date.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace the date's published snapshot even if it holds models this run does not target.",
)
@click.option(
    "--min-success-ratio",
    type=RATIO,
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
@click.option(
    "--shard",
    "shard",
    metavar="K/N",
    callback=_parse_shard,
    help="Fetch only shard K of N (by a stable hash of org/model) and stage it for "
    "`connector publish --shards N` instead of publishing.",
)
@click.option(
    "--processes",
    "processes",
    metavar="P|auto",
    default="1",
    show_default=True,
    callback=_parse_processes,
    help="Run P shard processes on this machine (auto: one per CPU) and publish once.",
)
@logging_options
def extract(
    config_path: str,
    output: str | None,
    day: date | None,
    allow_backdate: bool,
    replace: bool,
    min_success_ratio: float | None,
    progress: bool | None,
    summary_format: str,
    metrics_file: str | None,
    shard: tuple[int, int] | None,
    processes: int,
    log_level: str,
    log_format: str,
) -> None:
    """Fetch every configured model's versions and publish the day's snapshot."""
    from connector.cli.options import write_metrics_or_warn
    from connector.extraction.interrupt import Interrupt, stop_on_signals
    from connector.extraction.run import extract as run_extract

    configure_logging(log_level, log_format)
    config: Config = load_config(config_path)
    add_secrets(config.secrets())
    for warning in config.warnings:
        click.echo(f"Warning: {printable(warning)}", err=True)
    interrupt = Interrupt()
    # The cyclic GC stops every thread while it runs, the fetch workers included. What is alive
    # now (the modules, the config) outlives the run: frozen, the collections a run triggers do
    # not walk it again and again, and forked shard processes do not copy its pages when they
    # collect. And a run allocates and frees thousands of containers a second (parsed answers,
    # rows): with a young generation of 10,000 rather than 700 the collector stops the workers
    # about half as often (2,000 models: 213 collections, not 400; 0.06 s in all, not 0.12),
    # and a run's cyclic garbage (a few objects a call, from tenacity) is still collected.
    # Together about 0.1 s of that run's 3.7 s, measured. Both are given back afterwards, for
    # a caller that runs the command in its own process.
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(_YOUNG_OBJECTS, *thresholds[1:])
    try:
        with stop_on_signals(interrupt):
            summary = run_extract(
                config,
                day,
                output,
                min_success_ratio=min_success_ratio,
                progress=progress,
                allow_backdate=allow_backdate,
                replace=replace,
                shard=shard,
                processes=processes,
                interrupt=interrupt,
            )
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    if metrics_file:
        write_metrics_or_warn(metrics_file, summary)
    if summary_format == "json":
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(summary.render_text())
    sys.exit(int(summary.exit_code))
