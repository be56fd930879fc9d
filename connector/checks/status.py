"""The dataset's health in one screen: `connector status` and `connector.status()`.

Whether the dataset is whole is a question about small documents only: the partitions' names
(one listing), their `_manifest.json` (the newest snapshot's observation time, checks that were
overridden), the run records under `_runs/` (the last run of each recent day and its outcome) and
`_held/` (days waiting for a decision). No data file is opened, so a year of partitions costs a
listing and 365 small reads (in parallel on object storage), not a scan.

Every document read here was written by a run that may have been killed, by another version, or
edited by hand: each is size-bounded, parsed and validated (`connector.dataset.state`), and one
that is not what it should be becomes a line in `problems` naming it, never a traceback; what it
would have told is then unknown, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.checks.document import ChecksRecord, failing_text, read_checks
from connector.dataset import partition
from connector.dataset.held import MANIFEST_BYTES, held_days
from connector.dataset.layout import MANIFEST_NAME, RUNS_DIR, partition_path
from connector.dataset.locate import open_store
from connector.dataset.reader import Source, snapshot_dates
from connector.dataset.state import parse_json, validated
from connector.dataset.store import Store
from connector.errors import OutputError

MAX_LISTED = 100  # held days, overridden days, problems shown; the rest are counted
MISSING_SHOWN = 10  # missing days named; the rest are counted
RECENT_DAYS = 7  # days of run records shown
_READERS = 8  # parallel reads on object storage
_DAY_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TEXT = 64 * 1024


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Manifest(_Document):
    """The fields of a manifest that status reads."""

    run_id: str | None = Field(None, max_length=256)
    observed_at: str | None = Field(None, max_length=64)
    started_at: str | None = Field(None, max_length=64)


class _Record(_Document):
    """The fields of a run record that status reads."""

    run_id: str = Field(max_length=256)
    snapshot_date: str = Field(max_length=32)
    finished_at: str | None = Field(None, max_length=64)
    outcome: str = Field(max_length=64)
    exit_code: int
    published: bool = False
    message: str | None = Field(None, max_length=_TEXT)


@dataclass(frozen=True)
class LastRun:
    """The last run recorded for one snapshot date."""

    day: date
    run_id: str
    outcome: str
    exit_code: int
    finished_at: str | None
    published: bool
    message: str | None = None


@dataclass(frozen=True)
class Held:
    """A held snapshot waiting for a decision, and the checks that held it."""

    day: date
    run_id: str
    failing: str  # 'counts_decreased 3% > 1%, ...' ('' when unknown: see problems)
    observed_at: str | None = None


@dataclass(frozen=True)
class Overridden:
    """A published snapshot whose failing checks a person overrode (`connector accept`)."""

    day: date
    run_id: str | None
    failing: str
    by: str


@dataclass(frozen=True)
class DatasetStatus:
    """The dataset's health as `connector.status` found it: its snapshots and the days missing
    between them, the last runs, held and overridden snapshots, and the documents it could not
    read (`problems`); `age` is None when the newest snapshot's observation time is unknown."""

    uri: str
    checked_at: datetime
    snapshots: int = 0
    first_snapshot: date | None = None
    last_snapshot: date | None = None
    missing_days: int = 0
    missing: tuple[date, ...] = ()  # the first MISSING_SHOWN
    newest_observed_at: datetime | None = None
    last_runs: tuple[LastRun, ...] = ()
    held: tuple[Held, ...] = ()
    overridden: tuple[Overridden, ...] = ()
    problems: tuple[str, ...] = ()
    omitted: dict[str, int] = field(default_factory=dict)  # entries left out of each list

    @property
    def age(self) -> timedelta | None:
        """How long ago the newest snapshot was observed."""
        if self.newest_observed_at is None:
            return None
        return self.checked_at - self.newest_observed_at

    def older_than(self, max_age: timedelta) -> bool:
        """Whether the newest snapshot is older than `max_age`, or its age is unknown (a probe
        must not stay quiet about a dataset it cannot date)."""
        return self.age is None or self.age > max_age

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable view (days and times as ISO text)."""
        age = self.age
        return {
            "uri": self.uri,
            "checked_at": self.checked_at.isoformat(),
            "snapshots": self.snapshots,
            "first_snapshot": _iso(self.first_snapshot),
            "last_snapshot": _iso(self.last_snapshot),
            "missing_days": self.missing_days,
            "missing": [day.isoformat() for day in self.missing],
            "newest_observed_at": _iso(self.newest_observed_at),
            "age_seconds": round(age.total_seconds(), 3) if age is not None else None,
            "last_runs": [_plain(run) for run in self.last_runs],
            "held": [_plain(held) for held in self.held],
            "overridden": [_plain(item) for item in self.overridden],
            "problems": list(self.problems),
            "omitted": dict(self.omitted),
        }


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _plain(item: Any) -> dict[str, Any]:
    return {
        key: _iso(value) if isinstance(value, date) else value for key, value in vars(item).items()
    }


def status(
    data: Source,
    storage_options: Mapping[str, Any] | None = None,
    *,
    recent_days: int = RECENT_DAYS,
    now: datetime | None = None,
) -> DatasetStatus:
    """The health of the dataset at `data` (a local path, `file://` or `s3://` URI, or a Store):
    first and last snapshot, missing days between them, the last run of each of the
    `recent_days` most recent days with runs, held snapshots, snapshots published with
    overridden checks, the newest snapshot's observation time. Raises OutputError only when the
    dataset cannot be listed at all; a document that cannot be read is one of `problems`."""
    store = open_store(data, storage_options)
    checked_at = (now or datetime.now(UTC)).astimezone(UTC)
    problems: list[str] = []
    days = snapshot_dates(store)
    manifests, unreadable = read_published(store, days)
    problems += unreadable
    missing = _missing_days(days)
    held, held_problems = _held(store)
    problems += held_problems
    overridden = [
        Overridden(day, manifest.get("run_id"), failing_text(checks), _by(checks))
        for day, (manifest, checks) in manifests.items()
        if checks is not None and checks.verdict == "overridden"
    ]
    newest = _observed_at(store, days[-1], manifests.get(days[-1]), problems) if days else None
    runs = _last_runs(store, recent_days, problems)
    omitted = {
        "missing": max(len(missing) - MISSING_SHOWN, 0),
        "held": max(len(held) - MAX_LISTED, 0),
        "overridden": max(len(overridden) - MAX_LISTED, 0),
        "problems": max(len(problems) - MAX_LISTED, 0),
    }
    return DatasetStatus(
        uri=store.uri,
        checked_at=checked_at,
        snapshots=len(days),
        first_snapshot=days[0] if days else None,
        last_snapshot=days[-1] if days else None,
        missing_days=len(missing),
        missing=tuple(missing[:MISSING_SHOWN]),
        newest_observed_at=newest,
        last_runs=tuple(runs),
        held=tuple(held[:MAX_LISTED]),
        overridden=tuple(overridden[:MAX_LISTED]),
        problems=tuple(problems[:MAX_LISTED]),
        omitted={key: count for key, count in omitted.items() if count},
    )


def _missing_days(days: Sequence[date]) -> list[date]:
    if not days:
        return []
    present = set(days)
    span = (days[-1] - days[0]).days
    return [
        day for offset in range(1, span) if (day := days[0] + timedelta(days=offset)) not in present
    ]


Manifests = dict[date, tuple[dict[str, Any], ChecksRecord | None]]


def read_published(store: Store, days: Sequence[date]) -> tuple[Manifests, list[str]]:
    """The manifest (validated) and checks of each of `days`' partitions, and a problem for
    each that cannot be read (its day is then left out); read in parallel on object storage."""
    threads = 1 if store.is_local else _READERS
    with ThreadPoolExecutor(max_workers=threads) as pool:
        read = list(pool.map(lambda day: _manifest(store, day), days))
    found: Manifests = {}
    problems: list[str] = []
    for day, (manifest, checks, problem) in zip(days, read, strict=True):
        if problem is not None:
            problems.append(problem)
        if manifest is not None:
            found[day] = (manifest, checks)
    return found, problems


def _manifest(
    store: Store, day: date
) -> tuple[dict[str, Any] | None, ChecksRecord | None, str | None]:
    path = f"{partition_path(day)}/{MANIFEST_NAME}"
    shown = store.display(path)
    try:
        raw = store.get(path, limit=MANIFEST_BYTES)
        document = partition.read_manifest(store, day) if raw is None else parse_json(raw, shown)
        if document is None:
            return None, None, f"{store.display(partition_path(day))} has no manifest"
        if not isinstance(document, dict):
            raise OutputError(f"{shown} does not hold a JSON object")
        validated(_Manifest, document, shown)
        return document, read_checks(document, shown), None
    except OutputError as exc:
        return None, None, str(exc)


def _observed_at(
    store: Store, day: date, found: tuple[dict[str, Any], Any] | None, problems: list[str]
) -> datetime | None:
    """When the newest snapshot's counts were observed (its manifest's `observed_at`)."""
    if found is None:
        return None
    manifest = found[0]
    text = manifest.get("observed_at") or manifest.get("started_at")
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        shown = store.display(f"{partition_path(day)}/{MANIFEST_NAME}")
        problems.append(f"{shown}: observed_at {str(text)[:64]!r} is not a time")
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _held(store: Store) -> tuple[list[Held], list[str]]:
    found, problems = held_days(store)
    held = []
    for day in found:
        checks: ChecksRecord | None = None
        if day.problem is not None:
            problems.append(day.problem)
        elif day.manifest is not None:
            shown = store.display(f"_held/{day.day}/{day.run_id}/{MANIFEST_NAME}")
            try:
                checks = read_checks(day.manifest, shown)
            except OutputError as exc:
                problems.append(str(exc))
        if not day.has_data:
            problems.append(
                f"the held snapshot {day.day} run {day.run_id} has no data file (accepted "
                "already, or damaged): `connector discard` removes what is left"
            )
        observed = (day.manifest or {}).get("observed_at")
        held.append(
            Held(day.day, day.run_id, failing_text(checks), str(observed) if observed else None)
        )
    return held, problems


def _by(checks: ChecksRecord | None) -> str:
    return checks.override.describe() if checks and checks.override else "unknown"


def _last_runs(store: Store, recent_days: int, problems: list[str]) -> list[LastRun]:
    """The last recorded run of each of the `recent_days` most recent dates with records."""
    dates = sorted(
        (entry.name for entry in store.list(RUNS_DIR) if entry.kind == "dir"),
        reverse=True,
    )
    runs: list[LastRun] = []
    for name in dates:
        if len(runs) >= recent_days:
            break
        if not _DAY_DIR.match(name):
            problems.append(f"{store.display(f'{RUNS_DIR}/{name}')} is not a date of run records")
            continue
        records = [
            _record(store, f"{RUNS_DIR}/{name}/{entry.name}", problems)
            for entry in store.list(f"{RUNS_DIR}/{name}")
            if entry.kind == "file" and entry.name.endswith(".json")
        ]
        known = [record for record in records if record is not None]
        if known:
            last = max(known, key=lambda record: record.finished_at or "")
            runs.append(last)
    return runs


def _record(store: Store, path: str, problems: list[str]) -> LastRun | None:
    shown = store.display(path)
    try:
        raw = store.get(path, limit=MANIFEST_BYTES)
        if raw is None:
            return None
        record = validated(_Record, parse_json(raw, shown), shown)
        day = date.fromisoformat(record.snapshot_date)
    except OutputError as exc:
        problems.append(str(exc))
        return None
    except ValueError:
        problems.append(f"{shown}: snapshot_date is not a date")
        return None
    return LastRun(
        day,
        record.run_id,
        record.outcome,
        record.exit_code,
        record.finished_at,
        record.published,
        record.message,
    )
