"""Verdicts from measurements: the pure half of the publish checks (no I/O).

`judge` turns what `connector.checks.measure` measured (the staged day against the last
published day before it) into one `CheckResult` per check: its name, the measured value, the
threshold from `output.checks`, and the verdict:

- `pass` / `fail`: the value is within the threshold or beyond it (a share is compared after
  rounding to 6 places, so the value recorded is the value judged);
- `skipped`: nothing to compare with (the first day of a dataset checks only `empty`, against
  the partition a re-run replaces, and `duplicates`);
- `off`: switched off in `output.checks.disabled` (still measured, so the value is recorded).

A single `fail` holds the publish. `DayChecks.document()` is the `checks` object that the
manifest, the held day, the run record and the summary carry; lists in it are bounded
(`MAX_EXAMPLES`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from connector.config import ChecksSettings

Verdict = Literal["pass", "fail", "skipped", "off"]
MAX_EXAMPLES = 10  # models or versions named per check; the rest are counted
_FIRST_DAY = "no earlier snapshot to compare with (the first day of the dataset)"


@dataclass(frozen=True)
class Absent:
    """Models of the previous snapshot that have no rows now, for one reason."""

    models: int = 0
    examples: tuple[str, ...] = ()  # the first MAX_EXAMPLES `org/model`, sorted
    orgs: tuple[str, ...] = ()  # orgs with no model at all now (the first MAX_EXAMPLES)

    def describe(self) -> str:
        shown = ", ".join(self.examples)
        more = self.models - len(self.examples)
        text = f"{shown}, ... ({more} more)" if more > 0 else shown
        if self.orgs:
            text += f"; whole org(s): {', '.join(self.orgs)}"
        return text


@dataclass(frozen=True)
class Measurements:
    """What the measuring half found; every count is exact, every list bounded."""

    rows: int
    targets: int
    duplicates: int = 0  # (org, model, version) keys with more than one row
    duplicate_examples: tuple[str, ...] = ()
    previous_day: date | None = None  # the last published day before this one
    previous_rows: int = 0
    replaced_rows: int = 0  # rows of this date's partition, which a publish replaces
    previous_models: int = 0
    dropped_by_config: Absent = field(default_factory=Absent)  # the config no longer asks
    not_listed: Absent = field(default_factory=Absent)  # covered, but not listed now
    without_rows: Absent = field(default_factory=Absent)  # targeted: failed, or no versions
    versions_in_both: int = 0
    counts_decreased: int = 0
    decreased_examples: tuple[str, ...] = ()  # `org/model@version: before -> now`
    # versions in both whose count was known before, except one that stopped being `latest`
    # (a plain-string listing gives no count to the others unless `version_detail` fetches it)
    counts_known_before: int = 0
    counts_lost: int = 0
    lost_examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: `value` measured, `threshold` from the settings (None where the
    check has no number to compare with), `unit` `share` (0..1) or `count`."""

    name: str
    verdict: Verdict
    value: float | None
    threshold: float | None
    unit: Literal["share", "count"]
    detail: str
    examples: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def describe(self) -> str:
        """'counts_decreased 3.33% > 1%' for a check with a threshold, else its name and detail."""
        return describe(self.name, self.value, self.threshold, self.unit, self.detail)

    def to_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["examples"] = list(self.examples)
        return document


def describe(
    name: str, value: float | None, threshold: float | None, unit: str, detail: str
) -> str:
    """One check's outcome in a few words: 'counts_decreased 3.33% > 1%' where it has a value
    and a threshold, else its name and detail (also for results read back from a document)."""
    if value is None or threshold is None:
        return f"{name}: {detail}"
    relation = ">" if value > threshold else "<="
    return f"{name} {_shown(value, unit)} {relation} {_shown(threshold, unit)}"


def _shown(number: float, unit: str) -> str:
    if unit == "count":
        return f"{number:g}"
    return f"{number * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _beyond(value: float, threshold: float) -> Verdict:
    return "fail" if value > threshold else "pass"


def judge(measured: Measurements, settings: ChecksSettings) -> list[CheckResult]:
    """One result per check, in `config.CHECK_NAMES` order; a disabled check's verdict is
    `off` (its value is still recorded)."""
    results = [
        _coverage_config(measured, settings),
        _coverage_registry(measured, settings),
        _row_count(measured, settings),
        _counts_decreased(measured, settings),
        _counts_lost(measured, settings),
        _empty(measured),
        _duplicates(measured),
    ]
    disabled = set(settings.disabled)
    return [
        dataclasses.replace(result, verdict="off") if result.name in disabled else result
        for result in results
    ]


def _skipped(name: str, threshold: float, unit: Literal["share", "count"]) -> CheckResult:
    return CheckResult(name, "skipped", None, threshold, unit, _FIRST_DAY)


def _coverage_config(measured: Measurements, settings: ChecksSettings) -> CheckResult:
    limit = settings.coverage_config_max_models
    if measured.previous_day is None:
        return _skipped("coverage_config", limit, "count")
    dropped = measured.dropped_by_config
    detail = (
        f"{dropped.models} of the {measured.previous_models} model(s) of "
        f"{measured.previous_day} are no longer asked for by the config"
    )
    if dropped.models:
        detail += f": {dropped.describe()}"
    verdict = _beyond(dropped.models, limit)
    return CheckResult(
        "coverage_config", verdict, dropped.models, limit, "count", detail, dropped.examples
    )


def _coverage_registry(measured: Measurements, settings: ChecksSettings) -> CheckResult:
    limit = settings.coverage_registry_max_share
    if measured.previous_day is None:
        return _skipped("coverage_registry", limit, "share")
    gone, empty = measured.not_listed, measured.without_rows
    value = _share(gone.models + empty.models, measured.previous_models)
    detail = (
        f"{gone.models + empty.models} of the {measured.previous_models} model(s) of "
        f"{measured.previous_day} have no rows now"
    )
    reasons = [
        f"{empty.models} targeted but failed or without versions ({empty.describe()})"
        if empty.models
        else "",
        f"{gone.models} no longer listed by the registry ({gone.describe()})"
        if gone.models
        else "",
    ]
    if any(reasons):
        detail += ": " + "; ".join(reason for reason in reasons if reason)
    examples = (*empty.examples, *gone.examples)[:MAX_EXAMPLES]
    return CheckResult(
        "coverage_registry", _beyond(value, limit), value, limit, "share", detail, examples
    )


def _row_count(measured: Measurements, settings: ChecksSettings) -> CheckResult:
    limit = settings.row_count_max_decrease
    if measured.previous_day is None:
        return _skipped("row_count", limit, "share")
    before, now = measured.previous_rows, measured.rows
    value = _share(max(before - now, 0), before)
    detail = f"{now} row(s) now, {before} on {measured.previous_day}"
    return CheckResult("row_count", _beyond(value, limit), value, limit, "share", detail)


def _counts_decreased(measured: Measurements, settings: ChecksSettings) -> CheckResult:
    return _share_of_versions(
        "counts_decreased",
        settings.counts_decreased_max_share,
        measured,
        (measured.counts_decreased, measured.versions_in_both),
        f"{measured.counts_decreased} of the {measured.versions_in_both} version(s) in both "
        f"snapshots have a lower download_count than on {measured.previous_day}",
        measured.decreased_examples,
    )


def _counts_lost(measured: Measurements, settings: ChecksSettings) -> CheckResult:
    return _share_of_versions(
        "counts_lost",
        settings.counts_lost_max_share,
        measured,
        (measured.counts_lost, measured.counts_known_before),
        f"{measured.counts_lost} of the {measured.counts_known_before} version(s) whose "
        f"download_count was known on {measured.previous_day} have none now",
        measured.lost_examples,
    )


def _share_of_versions(
    name: str,
    limit: float,
    measured: Measurements,
    part_of_whole: tuple[int, int],
    detail: str,
    examples: tuple[str, ...],
) -> CheckResult:
    """A check of the versions in both snapshots: the share `part_of_whole` against `limit`,
    its examples appended to `detail`; skipped on a dataset's first day."""
    if measured.previous_day is None:
        return _skipped(name, limit, "share")
    value = _share(*part_of_whole)
    if examples:
        detail += ": " + ", ".join(examples)
    return CheckResult(name, _beyond(value, limit), value, limit, "share", detail, examples)


def _empty(measured: Measurements) -> CheckResult:
    """No rows (and so no targets with versions) where there were rows before: the previous
    day's, or those of this date's partition, which a publish would replace (a re-run). On a
    dataset's first day only the latter can be checked."""
    rows = measured.rows
    before = max(measured.previous_rows, measured.replaced_rows)
    failed = rows == 0 and before > 0
    if measured.previous_day is None and not measured.replaced_rows:
        compared = "nothing before to compare with"
    else:
        compared = f"{before} row(s) before"
    detail = f"{rows} row(s) from {measured.targets} target(s); {compared}"
    return CheckResult("empty", "fail" if failed else "pass", rows, None, "count", detail)


def _duplicates(measured: Measurements) -> CheckResult:
    count = measured.duplicates
    detail = f"{count} (org, model, version) key(s) with more than one row"
    if measured.duplicate_examples:
        detail += ": " + ", ".join(measured.duplicate_examples)
    return CheckResult(
        "duplicates",
        _beyond(count, 0),
        count,
        0,
        "count",
        detail,
        measured.duplicate_examples,
    )


@dataclass(frozen=True)
class DayChecks:
    """The checks of one staged day: every result, and the day they compared with."""

    results: tuple[CheckResult, ...]
    previous_day: date | None = None

    @property
    def failing(self) -> list[CheckResult]:
        """The results that hold the publish."""
        return [result for result in self.results if result.failed]

    @property
    def held(self) -> bool:
        """Whether a check holds the publish."""
        return bool(self.failing)

    def document(self) -> dict[str, Any]:
        """The `checks` object of a manifest, a held day, a run record and a summary."""
        return {
            "verdict": "held" if self.held else "passed",
            "previous_snapshot": self.previous_day.isoformat() if self.previous_day else None,
            "results": [result.to_dict() for result in self.results],
        }
