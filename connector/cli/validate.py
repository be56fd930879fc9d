"""`connector validate`: check a config file without calling the API.

It calls nothing, so by default it needs no secret: an unset `${VAR}` is checked as a
placeholder (a token passes as `${VAR}`), every other problem is still reported at once, and
the variables a run needs are listed with whether each is set here. `--require-env` makes an
unset one a problem too: the check for the machine that will run the connector.
"""

from __future__ import annotations

import os

import click

from connector.cli.options import config_option
from connector.config import config_variables, load_config
from connector.errors import ConfigError
from connector.redaction import printable


@click.command()
@config_option
@click.option(
    "--require-env",
    is_flag=True,
    help="Fail (exit 2) when an environment variable a run needs is not set, as extract "
    "would; without it they are checked as placeholders.",
)
def validate(config_path: str, require_env: bool) -> None:
    """Check a config file without calling the API (exit 2 on problems)."""
    variables = config_variables(config_path)
    unset = [name for name in sorted(variables) if not os.environ.get(name)]
    try:
        config = load_config(config_path, placeholders=not require_env)
    except ConfigError:
        _warn_unset(variables, unset, require_env)
        raise
    for warning in config.warnings:
        click.echo(f"Warning: {printable(warning)}", err=True)
    _warn_unset(variables, unset, require_env)
    targets = config.targets()
    patterns = sum(len(org.patterns) for org in config.orgs)
    discovered = (
        f" and {patterns} pattern(s) resolved by listModels at run time "
        "(`connector targets` lists them)"
        if patterns
        else ""
    )
    click.echo(
        printable(
            f"OK: {config_path}: {len(config.orgs)} org(s), {len(targets)} model(s){discovered}, "
            f"registry {config.registry.base_url} (API root {config.registry.api_root}), "
            f"output {config.output.uri}"
        )
    )
    if variables:
        needed = ", ".join(
            f"{name} ({'not set' if name in unset else 'set'})" for name in sorted(variables)
        )
        click.echo(f"A run needs these environment variables: {needed}")


def _warn_unset(variables: dict[str, tuple[str, ...]], unset: list[str], required: bool) -> None:
    """One line per variable a run needs that is not set here (an error with --require-env,
    reported with the other problems)."""
    if required:
        return
    for name in unset:
        click.echo(
            f"Warning: {name} is not set here ({', '.join(variables[name])}): checked with a "
            "placeholder; extract, targets and publish stop with exit 2 until it is set",
            err=True,
        )
