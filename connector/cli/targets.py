"""`connector targets`: print the resolved target list, for a person to check before a run.

It resolves the targets exactly as `extract` does (`plan_targets`), so it calls listModels for
the orgs with a pattern and nothing else: no version list, no detail, no write.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from connector.cli.options import config_option, logging_options
from connector.config import load_config
from connector.errors import (
    ExitCode,
    OrgBlockedError,
    RunOutcome,
    TargetFailure,
    decide_exit_code,
)
from connector.logs import add_secrets, configure_logging
from connector.redaction import printable

if TYPE_CHECKING:
    from connector.extraction.plan import TargetPlan


@click.command()
@config_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One org/model per line, or a JSON document with the discovery details.",
)
@logging_options
def targets(config_path: str, output_format: str, log_level: str, log_format: str) -> None:
    """Print the resolved target list; calls listModels only (exit 3: a listing failed)."""
    from connector.extraction.plan import plan_targets
    from connector.http.client import RegistryClient

    configure_logging(log_level, log_format)
    config = load_config(config_path)
    secrets = config.secrets()
    add_secrets(secrets)
    for warning in config.warnings:
        click.echo(f"Warning: {printable(warning)}", err=True)
    with RegistryClient(config.registry, secrets=secrets) as client:
        plan = plan_targets(config, client)
    failures = [error.failure(secrets) for error in plan.failures]  # built once, redacted
    named = set(config.targets())
    if output_format == "json":
        click.echo(json.dumps(_document(plan, named, failures), indent=2))
    else:
        for org, model in plan.targets:
            click.echo(printable(f"{org}/{model}"))
        for warning in plan.warnings:  # discovery's warnings quote what the server listed
            click.echo(f"Warning: {printable(warning)}", err=True)
        for failure in failures:
            click.echo(f"Error: {printable(failure.message)}", err=True)
        listed = ", ".join(
            f"{org}: {len(d.models)} listed in {d.pages} page(s)"
            for org, d in sorted(plan.discovered.items())
        )
        click.echo(
            f"{len(plan.targets)} target(s): {len(named)} named, "
            f"{len(set(plan.targets) - named)} discovered" + (f" ({listed})" if listed else ""),
            err=True,
        )
    sys.exit(int(_exit_code(plan)))


def _document(
    plan: TargetPlan, named: set[tuple[str, str]], failures: list[TargetFailure]
) -> dict[str, Any]:
    return {
        "targets": [
            {
                "org": org,
                "model": model,
                "source": "named" if (org, model) in named else "discovered",
            }
            for org, model in plan.targets
        ],
        "discovered": {
            org: {"listed": len(d.models), "pages": d.pages}
            for org, d in sorted(plan.discovered.items())
        },
        "failures": [failure.to_dict() for failure in failures],
        "warnings": plan.warnings,
    }


def _exit_code(plan: TargetPlan) -> ExitCode:
    """5 for a 426, 4 for a refused token, 3 for another failed listing (the list is short)."""
    return decide_exit_code(
        RunOutcome(
            incompatible_api=plan.incompatible is not None,
            orgs_blocked=any(isinstance(f, OrgBlockedError) for f in plan.failures),
            targets_failed=bool(plan.failures),
        )
    )
