"""`connector simulate`: run the simulated registry in the foreground for demos and manual tests.

Thin on purpose: options become a `SimulatorConfig`, and `serve_forever_cli` does the rest.
"""

from __future__ import annotations

import click

from connector.simulator.server import (
    DEFAULT_VERSIONS_SHAPE,
    MALFORMED_KINDS,
    MAX_DAY,
    MAX_MODELS,
    MAX_VERSIONS_PER_MODEL,
    FaultPlan,
    SimulatorConfig,
    is_loopback_host,
    serve_forever_cli,
)


def _loopback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_loopback_host(value):
        raise click.BadParameter(
            f"{value!r} is not a loopback address; the simulator serves this machine only"
        )
    return value


def _target(value: str, param: str) -> str:
    org, sep, model = value.partition("/")
    if not sep or not org or not model or "/" in model:
        raise click.BadParameter(f"{value!r} is not of the form ORG/MODEL", param_hint=param)
    return value


def _targets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_target(value, f"--{param.name}".replace("_", "-")) for value in values)


def _assignments(
    values: tuple[str, ...], hint: str, convert: type[str] | type[int]
) -> dict[str, str | int]:
    result: dict[str, str | int] = {}
    for value in values:
        target, sep, raw = value.partition("=")
        if not sep:
            raise click.BadParameter(
                f"{value!r} is not of the form ORG/MODEL=VALUE", param_hint=hint
            )
        try:
            result[_target(target, hint)] = convert(raw)
        except ValueError:
            raise click.BadParameter(
                f"{raw!r} in {value!r} is not valid", param_hint=hint
            ) from None
    return result


_RATE = click.FloatRange(0.0, 1.0)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=_loopback,
    help="Loopback address to bind; anything else is refused.",
)
@click.option(
    "--port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind; 0 picks a free one (printed on the first line).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of the catalog: the same seed serves the same bytes.",
)
@click.option(
    "--orgs",
    default=2,
    show_default=True,
    type=click.IntRange(1, MAX_MODELS),
    help="Number of orgs (org-00, org-01, ...); orgs x models per org is at most "
    f"{MAX_MODELS:,} (the catalog is built whole at start-up).",
)
@click.option(
    "--models-per-org",
    default=3,
    show_default=True,
    type=click.IntRange(1, MAX_MODELS),
    help="Models per org (model-0000, ...).",
)
@click.option(
    "--versions-per-model",
    default=5,
    show_default=True,
    type=click.IntRange(1, MAX_VERSIONS_PER_MODEL),
    help="Mean number of versions per model.",
)
@click.option(
    "--empty-models",
    default=0,
    show_default=True,
    type=click.IntRange(0, MAX_MODELS),
    help="How many models have no version at all.",
)
@click.option(
    "--day",
    default=1,
    show_default=True,
    type=click.IntRange(1, MAX_DAY),
    help="Simulated day: downloads grow and new versions appear as it increases; day N is "
    "2026-01-01 + N-1 days (a fixed calendar).",
)
@click.option(
    "--token",
    default="sim-token",
    show_default=True,
    envvar="SIMULATOR_TOKEN",
    show_envvar=True,
    help="Token every request must carry (in the --auth-scheme header).",
)
@click.option(
    "--auth-scheme",
    default="bearer",
    show_default=True,
    type=click.Choice(["bearer", "api-key"]),
    help="How the token must come: Authorization: Bearer, or X-API-Key (and no other).",
)
@click.option(
    "--page-cap",
    default=None,
    type=click.IntRange(min=1),
    help="listModels serves at most this many models a page, whatever `limit` asks.",
)
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0, 60_000.0),
    help="Delay added to every response, in milliseconds.",
)
@click.option(
    "--versions-shape",
    default=DEFAULT_VERSIONS_SHAPE,
    show_default=True,
    type=click.Choice(["strings", "objects", "mixed"]),
    help="How `versions` entries look: semver strings, summary objects, or both.",
)
@click.option("--rate-5xx", default=0.0, type=_RATE, help="Fraction of attempts answered 5xx.")
@click.option(
    "--html-5xx-fraction",
    default=0.0,
    type=_RATE,
    help="Fraction of those 5xx answered with an HTML page, as a proxy would.",
)
@click.option("--rate-429", default=0.0, type=_RATE, help="Fraction of attempts answered 429.")
@click.option(
    "--retry-after",
    default="0",
    show_default=True,
    help="Retry-After of a 429: seconds or an HTTP date.",
)
@click.option(
    "--rate-reset",
    default=0.0,
    type=_RATE,
    help="Fraction of attempts whose connection is reset without an answer.",
)
@click.option(
    "--rate-slow", default=0.0, type=_RATE, help="Fraction of attempts delayed by --slow-seconds."
)
@click.option(
    "--slow-seconds",
    default=0.0,
    type=click.FloatRange(0.0, 3600.0),
    help="Delay of a slow attempt, in seconds.",
)
@click.option(
    "--not-found",
    multiple=True,
    metavar="ORG/MODEL",
    callback=_targets,
    help="Answer 404 for this model (repeatable).",
)
@click.option(
    "--forbidden-org",
    multiple=True,
    metavar="ORG",
    help="Answer 403 for every request to this org (repeatable).",
)
@click.option("--upgrade-required", is_flag=True, help="Answer 426 to every request.")
@click.option(
    "--out-of-credits-org",
    multiple=True,
    metavar="ORG",
    help="Answer 429 'Insufficient credits' to every request for this org (repeatable).",
)
@click.option(
    "--malformed",
    multiple=True,
    metavar="ORG/MODEL=KIND",
    help=f"Answer this model with a broken body (repeatable); KIND is one of "
    f"{', '.join(sorted(MALFORMED_KINDS))}.",
)
@click.option(
    "--status",
    multiple=True,
    metavar="ORG/MODEL=CODE",
    help="Answer this model with a fixed 4xx/5xx status (repeatable).",
)
def simulate(
    host: str,
    port: int,
    seed: int,
    orgs: int,
    models_per_org: int,
    versions_per_model: int,
    empty_models: int,
    day: int,
    token: str,
    auth_scheme: str,
    page_cap: int | None,
    latency_ms: float,
    versions_shape: str,
    rate_5xx: float,
    html_5xx_fraction: float,
    rate_429: float,
    retry_after: str,
    rate_reset: float,
    rate_slow: float,
    slow_seconds: float,
    not_found: frozenset[str],
    forbidden_org: tuple[str, ...],
    upgrade_required: bool,
    out_of_credits_org: tuple[str, ...],
    malformed: tuple[str, ...],
    status: tuple[str, ...],
) -> None:
    """Serve a simulated model registry on a loopback port until SIGTERM or Ctrl-C."""
    try:
        faults = FaultPlan(
            seed=seed,
            rate_5xx=rate_5xx,
            html_5xx_fraction=html_5xx_fraction,
            rate_429=rate_429,
            retry_after=retry_after,
            rate_reset=rate_reset,
            rate_slow=rate_slow,
            slow_seconds=slow_seconds,
            not_found=not_found,
            forbidden_orgs=frozenset(forbidden_org),
            upgrade_required=upgrade_required,
            out_of_credits_orgs=frozenset(out_of_credits_org),
            status_for={k: int(v) for k, v in _assignments(status, "--status", int).items()},
            malformed={k: str(v) for k, v in _assignments(malformed, "--malformed", str).items()},
        )
        config = SimulatorConfig(
            seed=seed,
            orgs=orgs,
            models_per_org=models_per_org,
            versions_per_model=versions_per_model,
            empty_models=empty_models,
            day=day,
            token=token,
            auth_scheme=auth_scheme,
            page_cap=page_cap,
            latency_seconds=latency_ms / 1000,
            versions_shape=versions_shape,
            faults=faults,
            host=host,
            port=port,
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    serve_forever_cli(config)
