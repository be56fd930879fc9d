"""`connector validate`: check a config file without calling the API."""

from __future__ import annotations

import click

from connector.cli.options import config_option
from connector.config import load_config


@click.command()
@config_option
def validate(config_path: str) -> None:
    """Check a config file without calling the API (exit 2 on problems)."""
    config = load_config(config_path)
    for warning in config.warnings:
        click.echo(f"Warning: {warning}", err=True)
    targets = config.targets()
    patterns = sum(len(org.patterns) for org in config.orgs)
    discovered = (
        f" and {patterns} pattern(s) resolved by listModels at run time "
        "(`connector targets` lists them)"
        if patterns
        else ""
    )
    click.echo(
        f"OK: {config_path}: {len(config.orgs)} org(s), {len(targets)} model(s){discovered}, "
        f"registry {config.registry.base_url} (API root {config.registry.api_root}), "
        f"output {config.output.uri}"
    )
