"""Shared by the held-day tests (checks, accept/discard, status): configs for a simulator and
an output on any store, one of them missing an org, and what a held day holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import config_document
from s3_objects import ENV

from connector.config import Config, parse_config
from connector.dataset.layout import DATA_NAME, MANIFEST_NAME, held_path
from connector.dataset.store import Store
from connector.simulator.server import SimulatedRegistry

DROPPED_ORG = "org-01"


def config_for(
    registry: SimulatedRegistry,
    store: Store,
    *,
    drop_org: str | None = None,
    orgs: list[dict[str, Any]] | None = None,
    **output: Any,
) -> Config:
    """A config for every model of the simulator (but `drop_org`'s), writing to `store`."""
    if orgs is None:
        by_org: dict[str, list[str]] = {}
        for org, model in registry.targets():
            by_org.setdefault(org, []).append(model)
        orgs = [
            {"name": org, "models": models} for org, models in by_org.items() if org != drop_org
        ]
    document = config_document(
        registry, Path("unused"), orgs=orgs, output_settings={"uri": store.uri, **output}
    )
    return parse_config(document, ENV)


def held_data(day: Any, run_id: str) -> str:
    """The store path of a held day's data file."""
    return f"{held_path(day, run_id)}/{DATA_NAME}"


def held_manifest(store: Store, day: Any, run_id: str) -> dict[str, Any]:
    raw = store.get(f"{held_path(day, run_id)}/{MANIFEST_NAME}")
    assert raw is not None, "no held manifest"
    document: dict[str, Any] = json.loads(raw)
    return document


def failing(checks: dict[str, Any] | None) -> list[str]:
    """The names of the checks that failed in a `checks` document."""
    assert checks is not None
    return [result["name"] for result in checks["results"] if result["verdict"] == "fail"]
