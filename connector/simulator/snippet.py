"""A ready connector config for a running simulator, shared by `make demo` and
`connector simulate` so the two never disagree on what a working config looks like."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path


def config_snippet(
    url: str,
    output: str | Path,
    targets: list[tuple[str, str]],
    *,
    header: str,
    discover: bool = False,
    auth_scheme: str = "bearer",
) -> str:
    """YAML for every (org, model) of the simulator; the token comes from the environment and
    goes as `auth_scheme` says. `discover` lists each org as `models: ["*"]` with
    `version_detail: missing` instead."""
    by_org: dict[str, list[str]] = {}
    for org, model in targets:
        by_org.setdefault(org, []).append(model)
    orgs = "\n".join(
        f"  - name: {org}\n    models: " + ('["*"]' if discover else f"[{', '.join(models)}]")
        for org, models in by_org.items()
    )
    detail = "  version_detail: missing\n" if discover else ""
    scheme = f"  auth_scheme: {auth_scheme}\n" if auth_scheme != "bearer" else ""
    return (
        f"# {header}\n"
        f"registry:\n  base_url: {url}\n  token: ${{MODEL_REGISTRY_TOKEN}}\n{scheme}"
        "  concurrency: 8\n"
        f"{detail}"
        f"orgs:\n{orgs}\n"
        f"output:\n  uri: {output}\n"
    )


def calendar_line(start_date: date, day: int) -> str:
    """The simulator's fixed calendar, in words: which date a simulated day stands for."""
    today = start_date + timedelta(days=day - 1)
    return (
        f"simulated day {day} is {today.isoformat()} (fixed calendar: day N is "
        f"{start_date.isoformat()} + N-1 days, whatever the real date)"
    )
