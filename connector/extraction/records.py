"""The run record: every run that reached the output leaves `<output>/_runs/<date>/<run_id>.json`.

A run that publishes nothing (a guard refused it, too many targets failed, the writer broke)
otherwise leaves no trace to look at in the morning. The record holds the summary (its lists
bounded like every summary's) and the settings the run used without a single secret. Only the
newest `keep_run_records` records of an output are kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from connector.config import Config
from connector.dataset.datafile import encode
from connector.dataset.layout import RUNS_DIR
from connector.dataset.store import OUTPUT_ERRORS, Store
from connector.extraction.context import RunContext
from connector.extraction.summary import RunSummary
from connector.loggers import get_logger
from connector.redaction import redact

log = get_logger(__name__)


def record_path(summary: RunSummary) -> str:
    """Where the record of a run goes, in its store."""
    return f"{RUNS_DIR}/{summary.snapshot_date}/{summary.run_id}.json"


def run_settings(config: Config, **overrides: Any) -> dict[str, Any]:
    """The configuration a run used, with every token left out and proxy credentials removed,
    plus the command-line overrides that were in effect."""
    document = config.model_dump(
        mode="json", exclude={"registry": {"token"}, "orgs": {"__all__": {"token"}}}
    )
    proxy = document["registry"].get("proxy")
    if proxy:
        parts = urlsplit(proxy)
        if parts.username or parts.password:
            netloc = "***@" + (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
            document["registry"]["proxy"] = urlunsplit(parts._replace(netloc=netloc))
    document["org_tokens"] = sorted(org.name for org in config.orgs if org.token is not None)
    document["overrides"] = overrides
    return document


def recorded(context: RunContext, summary: RunSummary, outcome: str | None = None) -> RunSummary:
    """Write the run's record (`outcome`: where the summary's own exit code does not say it)
    and return the summary that names it. Never raises: a record that cannot be written is
    logged, because the run's outcome, already decided, must not change because of it."""
    path = write_run_record(
        context.store,
        summary,
        context.settings,
        keep=context.keep_run_records,
        secrets=context.secrets,
        outcome=outcome,
    )
    return summary if path is None else dataclasses.replace(summary, record=path)


def write_run_record(
    store: Store,
    summary: RunSummary,
    settings: Mapping[str, Any],
    *,
    keep: int,
    secrets: tuple[str, ...] | list[str],
    outcome: str | None = None,
) -> str | None:
    """Write the record (one atomic put, readable by others but not writable: 0o644 locally)
    and prune the oldest beyond `keep`; returns where it went, or None when it could not be
    written (logged). Call it while holding the output lock."""
    path = record_path(summary)
    shown = store.display(path)
    recorded = dataclasses.replace(summary, record=shown)
    document = {**recorded.to_dict(), "settings": dict(settings)}
    if outcome is not None:
        document["outcome"] = outcome
    try:
        # Failure details come from servers; scrub once more so no token reaches the disk.
        store.put(path, encode(_scrub(document, list(secrets))), mode=0o644)
    except OUTPUT_ERRORS as exc:
        log.warning("could not write the run record %s: %s", shown, exc, extra={"event": "record"})
        return None
    prune_run_records(store, keep)
    return shown


def prune_run_records(store: Store, keep: int) -> list[str]:
    """Delete all but the `keep` newest records (by modification time) and the date
    directories left empty; returns what was deleted. Problems are logged, never raised."""
    try:
        days = [entry.name for entry in store.list(RUNS_DIR) if entry.kind == "dir"]
        records = sorted(
            (entry.mtime_ns or 0, f"{RUNS_DIR}/{day}/{entry.name}")
            for day in days
            for entry in store.list(f"{RUNS_DIR}/{day}")
            if entry.kind == "file" and entry.name.endswith(".json")
        )
    except OUTPUT_ERRORS as exc:
        log.warning(
            "could not list %s: %s", store.display(RUNS_DIR), exc, extra={"event": "record"}
        )
        return []
    removed = []
    for _, path in records[: max(len(records) - keep, 0)]:
        try:
            store.delete(path)
            removed.append(path)
        except OUTPUT_ERRORS as exc:
            log.warning(
                "could not delete %s: %s", store.display(path), exc, extra={"event": "record"}
            )
    for day in {path.split("/")[1] for path in removed}:
        try:
            if not store.list(f"{RUNS_DIR}/{day}"):
                store.delete_tree(f"{RUNS_DIR}/{day}")
        except OUTPUT_ERRORS:
            pass  # not empty: it still holds newer records
    return removed


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {key: _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, secrets) for item in value]
    return value
