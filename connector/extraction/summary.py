"""`RunSummary`: what one run did, for people (text), machines (JSON) and exit codes.

A summary is frozen: a run assembles it once (`outcome.summarize`), the manifest is built from it
(`build_manifest`), and a part's record is its summary (`to_dict`), read back by `from_dict`: one
serialised form of an outcome. Every list in it that a server can make long (failures, dropped
versions, warnings, missing targets) holds at most `MAX_LISTED` entries; `omitted` says how
many more there were, so a summary, a manifest or a record stays small whatever a registry sends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from connector._version import __version__
from connector.checks.document import read_checks
from connector.dataset.schema import SCHEMA_VERSION
from connector.errors import (
    ConnectorError,
    ErrorType,
    ExitCode,
    OutputError,
    RunOutcome,
    TargetFailure,
    decide_exit_code,
)
from connector.redaction import printable

MAX_LISTED = 100  # entries of one list kept in a summary, a manifest or a record
_FAILURES_SHOWN = 10  # FAILED lines in the text summary
_T = TypeVar("_T")


def success_ratio(succeeded: int, attempted: int) -> float:
    """Share of targets that succeeded (1.0 when there were none): what the publish guard reads."""
    return succeeded / attempted if attempted else 1.0


def first(items: Iterable[_T], limit: int = MAX_LISTED) -> tuple[list[_T], int]:
    """The first `limit` items and how many were left out."""
    kept: list[_T] = []
    left_out = 0
    for item in items:
        if len(kept) < limit:
            kept.append(item)
        else:
            left_out += 1
    return kept, left_out


@dataclass(frozen=True)
class RunSummary:
    """The outcome of `connector.extract` or `connector.publish`; `exit_code` is what the CLI
    exits with."""

    run_id: str
    snapshot_date: str
    output_uri: str
    started_at: str  # when the run began observing counts (UTC)
    registry: str | None = None  # the registry's API root the counts came from
    backdated: bool = False  # published under a date before the observation's yesterday
    finished_at: str | None = None
    elapsed_seconds: float = 0.0
    targets_attempted: int = 0
    targets_succeeded: int = 0
    rows: int = 0
    files: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)  # by HTTP status
    requests_by_operation: dict[str, int] = field(default_factory=dict)  # by API operationId
    failures: tuple[TargetFailure, ...] = ()  # sorted by (org, model); the first MAX_LISTED
    # Versions listed but deleted before their detail was fetched (a 404): no row, no failure.
    dropped_versions: list[dict[str, Any]] = field(default_factory=list)
    auth_failed_orgs: list[str] = field(default_factory=list)  # orgs whose token was refused
    # Orgs whose listModels failed: their discovered models are unknown, so nothing publishes.
    discovery_failed_orgs: list[str] = field(default_factory=list)
    published: bool = False
    partition: str | None = None
    checks: dict[str, Any] | None = None  # the checks of the staged day (connector.checks)
    held: str | None = None  # where a check held the snapshot (under _held/), not published
    rejected_dir: str | None = None
    record: str | None = None  # this run's record under <output>/_runs/
    missing_targets: list[str] = field(default_factory=list)  # refused by the half-config guard
    shard: str | None = None  # "K/N" for a part run, which stages instead of publishing
    staged: str | None = None  # where that run staged its part
    shards: int | None = None  # how many parts a publish merged (or --processes ran)
    message: str | None = None
    warnings: list[str] = field(default_factory=list)
    omitted: dict[str, int] = field(default_factory=dict)  # entries left out of each list
    run_outcome: RunOutcome = field(default_factory=RunOutcome)

    @property
    def exit_code(self) -> ExitCode:
        """Decided from `run_outcome` by `errors.decide_exit_code`, the only place that does."""
        return decide_exit_code(self.run_outcome)

    @property
    def targets_failed(self) -> int:
        """Targets that did not succeed (failed, skipped, or never reached by an aborted run)."""
        return self.targets_attempted - self.targets_succeeded

    @property
    def failure_count(self) -> int:
        """Every failure, those left out of `failures` included."""
        return len(self.failures) + self.omitted.get("failures", 0)

    def targets(self) -> dict[str, int]:
        """The `targets` counts of the summary JSON and the manifest (built here only)."""
        return {
            "attempted": self.targets_attempted,
            "succeeded": self.targets_succeeded,
            "failed": self.targets_failed,
        }

    @property
    def success_ratio(self) -> float:
        """Share of targets that succeeded (1.0 when there were none)."""
        return success_ratio(self.targets_succeeded, self.targets_attempted)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable view (exit code as its number and name); `from_dict` reads it
        back."""
        document: dict[str, Any] = {}
        for name in (f.name for f in dataclasses.fields(self)):
            document[name] = getattr(self, name)
            if name == "targets_succeeded":
                document["targets_failed"] = self.targets_failed
        document["files"] = list(self.files)
        document["requests"] = dict(self.requests)
        document["requests_by_operation"] = dict(self.requests_by_operation)
        document["auth_failed_orgs"] = list(self.auth_failed_orgs)
        document["warnings"] = list(self.warnings)
        document["failures"] = [failure.to_dict() for failure in self.failures]
        document["dropped_versions"] = list(self.dropped_versions)
        document["missing_targets"] = list(self.missing_targets)
        document["omitted"] = dict(self.omitted)
        document["run_outcome"] = dataclasses.asdict(self.run_outcome)
        document["exit_code"] = int(self.exit_code)
        document["outcome"] = self.exit_code.outcome
        document["targets"] = self.targets()
        return document

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], shown: str) -> RunSummary:
        """A summary read back from `to_dict` (a part's record): checked field by field, an
        OutputError naming `shown` and the field when it is not one."""
        if not isinstance(document, Mapping):
            raise OutputError(f"{shown} does not hold a run summary")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in document.items() if key in names}
        failures = values.pop("failures", [])
        if not isinstance(failures, list):
            raise OutputError(f"{shown}: failures is not a list")
        try:
            summary = _SUMMARY.validate_python({**values, "failures": ()})
        except ValidationError as exc:
            problem = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise OutputError(f"{shown}: {where}: {problem['msg']}") from None
        if not all(isinstance(item, dict) for item in failures):
            raise OutputError(f"{shown}: failures holds an entry that is not an object")
        try:
            read = tuple(TargetFailure.from_dict(item) for item in failures)
        except ConnectorError as exc:
            raise OutputError(f"{shown}: {exc}") from None
        return dataclasses.replace(summary, failures=read)

    def _from_shards(self) -> str:
        return f" (from {self.shards} shards)" if self.shards else ""

    def render_text(self) -> str:
        """The one-screen summary printed at the end of a run."""
        requests = sum(self.requests.values())
        by_status = ", ".join(f"{k}: {v}" for k, v in sorted(self.requests.items()))
        by_operation = ", ".join(f"{k}: {v}" for k, v in sorted(self.requests_by_operation.items()))
        lines = [
            f"snapshot {self.snapshot_date}  run {self.run_id}  outcome: "
            f"{self.exit_code.outcome} (exit {int(self.exit_code)})",
            f"targets   {self.targets_succeeded} ok, {self.targets_failed} failed "
            f"of {self.targets_attempted}",
            f"rows      {self.rows:,} in {len(self.files)} file(s)",
            f"requests  {requests:,}" + (f" ({by_status})" if by_status else ""),
            *([f"          by operation: {by_operation}"] if by_operation else []),
            f"elapsed   {self.elapsed_seconds:.2f}s",
        ]
        if self.registry:
            lines.append(f"registry  {self.registry}")
        if self.backdated:
            lines.append(f"backdated observed {self.started_at}, filed as {self.snapshot_date}")
        lines += self._published_lines()
        lines += self._check_lines()
        if self.message:
            lines.append(f"note      {self.message}")
        lines += [f"warning   {warning}" for warning in self.warnings]
        if self.omitted.get("warnings"):
            lines.append(f"warning   ... and {self.omitted['warnings']} more warning(s)")
        lines += self._failure_lines()
        if self.dropped_versions:
            dropped = len(self.dropped_versions) + self.omitted.get("dropped_versions", 0)
            lines.append(
                f"dropped   {dropped} version(s) deleted since they were listed "
                "(getModelVersion 404), listed under dropped_versions"
            )
        if self.rejected_dir:
            lines.append(f"rejected payloads kept in {self.rejected_dir}")
        if self.record:
            lines.append(f"record    {self.record}")
        return printable("\n".join(lines), keep_newlines=True)  # server text is in there

    def _published_lines(self) -> list[str]:
        if self.published:
            return [f"published {self.partition}" + self._from_shards()]
        if self.staged:
            count = (self.shard or "?/?").split("/")[1]
            return [
                f"staged    shard {self.shard} in {self.staged}; published nothing yet",
                f"next      connector publish --date {self.snapshot_date} --shards {count} "
                "once every shard is staged",
            ]
        if self.held:
            return [f"held      {self.held}: published nothing; earlier snapshots are unchanged"]
        return ["published nothing; earlier snapshots are unchanged"]

    def _check_lines(self) -> list[str]:
        """The checks' verdict, and one line per check that held the snapshot."""
        checks = read_checks({"checks": self.checks}, "the summary")
        if checks is None:
            return []
        against = checks.previous_snapshot or "no earlier snapshot"
        lines = [f"checks    {checks.verdict} (against {against})"]
        lines += [
            f"  FAILED CHECK {r.describe()}" + (f": {r.detail}" if r.threshold is not None else "")
            for r in checks.failing
        ]
        if checks.override is not None:
            lines.append(f"  overridden by {checks.override.describe()}")
        return lines

    def _failure_lines(self) -> list[str]:
        """One FAILED line per failure (the first few); targets that were never attempted (a
        stopped run, a rejected token) are one count, not a line each."""
        failed = [f for f in self.failures if f.error_type is not ErrorType.SKIPPED]
        skipped = len(self.failures) - len(failed)
        lines = [
            f"  FAILED {failure.org}/{failure.model}: {_what_failed(failure)}: "
            f"{failure.detail} (attempts: {failure.attempts})"
            for failure in failed[:_FAILURES_SHOWN]
        ]
        omitted = self.omitted.get("failures", 0)
        hidden = len(failed) - _FAILURES_SHOWN + omitted
        if hidden > 0:
            where = self.record or "the JSON summary (--summary-format json)"
            listed = f"the first {MAX_LISTED} are listed in" if omitted else "listed in"
            lines.append(f"  ... and {hidden} more failure(s), {listed} {where}")
        if skipped:
            why = (
                "the run was stopped"
                if self.run_outcome.interrupted or self.run_outcome.terminated
                else "their org was blocked or the run aborted"
            )
            lines.append(f"skipped   {skipped} target(s) not attempted: {why}")
        return lines


_SUMMARY = TypeAdapter(RunSummary)


def _what_failed(failure: TargetFailure) -> str:
    """'HTTP 404 not_found' when the registry answered; otherwise what it was, in words
    ('invalid payload', 'timeout'), never a made-up 'HTTP -'."""
    if failure.status is not None:
        server = failure.server_error_type
        said = f" (server: {server})" if server and server != failure.error_type else ""
        return f"HTTP {failure.status} {failure.error_type}{said}"
    return failure.error_type.replace("_", " ")


def build_manifest(summary: RunSummary, *, min_success_ratio: float) -> dict[str, Any]:
    """The partition's manifest (the publish adds `rows` and `files`)."""
    manifest: dict[str, Any] = {
        "run_id": summary.run_id,
        "connector_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "snapshot_date": summary.snapshot_date,
        "started_at": summary.started_at,
        "finished_at": summary.finished_at,
        # counts observed on another day than the one they are filed under (--allow-backdate)
        "backdated": summary.backdated,
        "observed_at": summary.started_at,
        "registry": summary.registry,
        "targets": summary.targets(),
        "requests": dict(summary.requests),
        "requests_by_operation": dict(summary.requests_by_operation),
        "min_success_ratio": min_success_ratio,
        "failures": [failure.to_dict() for failure in summary.failures],
        "dropped_versions": list(summary.dropped_versions),
        "discovery_failed_orgs": list(summary.discovery_failed_orgs),
        "warnings": list(summary.warnings),
        "omitted": dict(summary.omitted),
    }
    if summary.shards:
        manifest["shards"] = summary.shards
    if summary.checks is not None:
        manifest["checks"] = summary.checks
    return manifest
