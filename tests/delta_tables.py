"""A Delta dataset read back the way its users read it: deltalake's own reader and polars'
`read_delta`, on the table's URI with the storage options a user would write (not the
connector's code that computes them), plus the commit files of its log as stored."""

from __future__ import annotations

import json
import os
from datetime import date
from typing import Any

import polars as pl
from deltalake import DeltaTable

from connector.dataset.store import Store

COUNTED = ["snapshot_date", "org", "model", "version", "download_count"]


def table_location(store: Store) -> tuple[str, dict[str, str]]:
    """The table's URI and the options a user passes for this store (moto: the endpoint from
    the environment, plain HTTP); credentials come from the environment."""
    if store.is_local:
        return os.path.abspath(store.native("model_versions")), {}
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    return store.display("model_versions"), {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}


def open_delta(store: Store, version: int | None = None) -> DeltaTable:
    uri, options = table_location(store)
    return DeltaTable(uri, version=version, storage_options=options or None)


def counts(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(day, org, model, version, download_count) sorted: what a snapshot says."""
    found = []
    for row in rows:
        day = row["snapshot_date"]
        day = day.date() if hasattr(day, "date") and not isinstance(day, date) else day
        found.append((day, row["org"], row["model"], row["version"], row["download_count"]))
    return sorted(found, key=lambda t: tuple("" if v is None else str(v) for v in t))


def deltalake_counts(store: Store, version: int | None = None) -> list[tuple[Any, ...]]:
    """The table's rows through deltalake's reader (Arrow dataset of the given version)."""
    table = open_delta(store, version).to_pyarrow_dataset().to_table(columns=COUNTED)
    return counts(table.to_pylist())


def polars_counts(store: Store, version: int | None = None) -> list[tuple[Any, ...]]:
    """The table's rows through polars' `read_delta`."""
    uri, options = table_location(store)
    frame = pl.read_delta(uri, version=version, storage_options=options or None)
    return counts(frame.select(COUNTED).to_dicts())


def expected_counts(registry: Any, sim_day: int, snapshot: date) -> list[tuple[Any, ...]]:
    """The simulator's ground truth for one snapshot, in the shape of `counts`."""
    rows = [{**row, "snapshot_date": snapshot} for row in registry.expected_rows(sim_day)]
    return counts(rows)


def commit(store: Store, version: int) -> dict[str, Any]:
    """The commitInfo of one version, read from its log file as stored."""
    raw = store.get(f"model_versions/_delta_log/{version:020d}.json")
    assert raw is not None, f"no commit {version}"
    for line in raw.decode().splitlines():
        action = json.loads(line)
        if "commitInfo" in action:
            info: dict[str, Any] = action["commitInfo"]
            return info
    raise AssertionError(f"commit {version} has no commitInfo")


def commit_actions(store: Store, version: int) -> list[dict[str, Any]]:
    """Every action of one commit file."""
    raw = store.get(f"model_versions/_delta_log/{version:020d}.json")
    assert raw is not None
    return [json.loads(line) for line in raw.decode().splitlines()]
