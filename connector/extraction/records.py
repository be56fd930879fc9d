"""The run record: every run that reached the output leaves `<output>/_runs/<date>/<run_id>.json`.

A run that publishes nothing (a guard refused it, too many targets failed, the writer broke)
otherwise leaves no trace on disk to look at in the morning. The record holds the summary with
every failure, and the settings the run used without a single secret. Only the newest
`keep` records of an output are kept.

`write_run_record` is one small function on purpose: whatever ends a run (a normal finish, a
guard, a signal) calls it with the summary as it stands and, where the summary's own exit code
does not say it, the outcome (e.g. "interrupted").
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

from connector.config import Config
from connector.dataset.layout import make_dirs
from connector.dataset.storage import STORAGE_ERRORS, Location, put_bytes
from connector.dataset.writer import write_json_atomic
from connector.errors import OutputError
from connector.extraction.summary import RunSummary
from connector.redaction import redact

log = logging.getLogger(__name__)

RUNS_DIR = "_runs"


def record_path(root: Path, summary: RunSummary) -> Path:
    """Where the record of this run goes."""
    return root / RUNS_DIR / summary.snapshot_date / f"{summary.run_id}.json"


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


def write_run_record(
    root: Path | Location,
    summary: RunSummary,
    settings: Mapping[str, Any],
    *,
    keep: int,
    secrets: list[str],
    outcome: str | None = None,
) -> Path | str | None:
    """Write the run's record and prune the oldest beyond `keep`; returns its path.

    Never raises: a record that cannot be written is logged (and None returned), because the
    run's own outcome, already decided, must not change because of it. The record names
    itself (`record`); the caller puts the returned path into its summary. Call it while
    holding the output lock.
    """
    if isinstance(root, Location):
        if not root.is_local:
            return _write_object_record(
                root, summary, settings, keep=keep, secrets=secrets, outcome=outcome
            )
        root = root.local_path
    path = record_path(root, summary)
    recorded = dataclasses.replace(summary, record=str(path))
    document = {**recorded.to_dict(), "settings": dict(settings)}
    if outcome is not None:
        document["outcome"] = outcome
    # Failure details come from servers; scrub once more so no token reaches the disk.
    text_safe = _scrub(document, secrets)
    try:
        make_dirs(root, RUNS_DIR, summary.snapshot_date)
        write_json_atomic(path, text_safe, mode=0o644)  # others may read it, not change it
    except (OSError, OutputError) as exc:
        log.warning("could not write the run record %s: %s", path, exc, extra={"event": "record"})
        return None
    prune_run_records(root, keep)
    return path


def _write_object_record(
    location: Location,
    summary: RunSummary,
    settings: Mapping[str, Any],
    *,
    keep: int,
    secrets: list[str],
    outcome: str | None,
) -> str | None:
    """The same record on object storage: one PUT (whole or absent), then the oldest pruned."""
    key = location.join(RUNS_DIR, summary.snapshot_date, f"{summary.run_id}.json")
    recorded = dataclasses.replace(summary, record=location.display(key))
    document = {**recorded.to_dict(), "settings": dict(settings)}
    if outcome is not None:
        document["outcome"] = outcome
    text = json.dumps(_scrub(document, secrets), indent=2, sort_keys=True, default=str) + "\n"
    try:
        put_bytes(location.filesystem, key, text.encode("utf-8"))
        selector = pafs.FileSelector(location.join(RUNS_DIR), recursive=True, allow_not_found=True)
        records = sorted(
            (info.mtime, info.path)
            for info in location.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(".json")
        )
        for _, old in records[: max(len(records) - keep, 0)]:
            location.filesystem.delete_file(old)
    except STORAGE_ERRORS as exc:
        log.warning("could not write the run record %s: %s", key, exc, extra={"event": "record"})
        return None
    return location.display(key)


def prune_run_records(root: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest records (by modification time) and empty date
    directories; returns what was deleted. Problems are logged, never raised."""
    runs = root / RUNS_DIR
    try:
        records = sorted(
            (entry.stat().st_mtime_ns, str(entry), entry) for entry in runs.glob("*/*.json")
        )
    except OSError as exc:
        log.warning("could not list %s: %s", runs, exc, extra={"event": "record"})
        return []
    removed = []
    for _, _, entry in records[: max(len(records) - keep, 0)]:
        try:
            entry.unlink()
            removed.append(entry)
        except OSError as exc:
            log.warning("could not delete %s: %s", entry, exc, extra={"event": "record"})
    for directory in {entry.parent for entry in removed}:
        with contextlib.suppress(OSError):  # not empty: it still holds newer records
            os.rmdir(directory)
    return removed


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {key: _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, secrets) for item in value]
    return value
