"""A `checks` document read back: from a manifest, a held day or a run record.

What the connector wrote may since have been edited, truncated or written by another version, so
the document is untrusted: `read_checks` validates its shape and bounds every list and text
(`connector.dataset.state.validated`), and a document that is not one is an `OutputError` naming
where it was read, never a traceback. Unknown keys are ignored (a later version may add some).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connector.checks.verdicts import MAX_EXAMPLES, describe
from connector.dataset.state import validated

_NAME = 64
_TEXT = 4096
_RESULTS = 64  # a version of the connector has seven checks; far more is not a document of it


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ResultRecord(_Record):
    """One check's result, as a document holds it."""

    name: str = Field(max_length=_NAME)
    verdict: str = Field(max_length=_NAME)
    value: float | None = None
    threshold: float | None = None
    unit: str = Field("share", max_length=_NAME)
    detail: str = Field("", max_length=_TEXT)
    examples: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES)

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def describe(self) -> str:
        """'counts_decreased 3.33% > 1%' (see `verdicts.describe`)."""
        return describe(self.name, self.value, self.threshold, self.unit, self.detail)


class Override(_Record):
    """Who published a held day anyway (`connector accept`), when, and why."""

    by: str = Field(max_length=_NAME * 4)
    host: str = Field(max_length=_NAME * 4)
    at: str = Field(max_length=_NAME)
    run_id: str = Field(max_length=_NAME)
    reason: str | None = Field(None, max_length=_TEXT)

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.by}@{self.host} at {self.at}{why}"


class ChecksRecord(_Record):
    """The `checks` object: `verdict` is `passed`, `held` or `overridden` (held, then
    accepted: `override` says by whom)."""

    verdict: str = Field(max_length=_NAME)
    previous_snapshot: str | None = Field(None, max_length=_NAME)
    results: list[ResultRecord] = Field(default_factory=list, max_length=_RESULTS)
    override: Override | None = None

    @property
    def failing(self) -> list[ResultRecord]:
        """The results that held the day (and, once accepted, were overridden)."""
        return [result for result in self.results if result.failed]

    def result(self, name: str) -> ResultRecord | None:
        return next((result for result in self.results if result.name == name), None)


def read_checks(document: Mapping[str, Any] | None, shown: str) -> ChecksRecord | None:
    """The `checks` of a manifest or record (None when it has none: written before checks
    existed); OutputError naming `shown` when they are not a checks document."""
    if document is None or document.get("checks") is None:
        return None
    return validated(ChecksRecord, document["checks"], f"the checks in {shown}")


def failing_text(checks: ChecksRecord | None) -> str:
    """'coverage_config 1 > 0, counts_decreased 3.33% > 1%' (empty when nothing failed)."""
    return ", ".join(result.describe() for result in (checks.failing if checks else []))
