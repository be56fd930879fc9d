"""One run's outcome: the exit code decided in one pure function, failures as frozen records."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import TOKEN, config_document

from connector import extract
from connector.config import parse_config
from connector.error_docs import EXIT_CODE_DOCS
from connector.errors import (
    EXIT_CODE_PRECEDENCE,
    ErrorType,
    ExitCode,
    RetryableError,
    RunOutcome,
    TargetFailure,
    combine_outcomes,
    decide_exit_code,
)
from connector.extraction.summary import MAX_LISTED
from connector.simulator.server import FaultPlan

# (the facts of a run, the exit code): single conditions first, then rows where several apply.
EXIT_CODE_CASES: list[tuple[RunOutcome, ExitCode]] = [
    (RunOutcome(), ExitCode.OK),
    (RunOutcome(targets_failed=True), ExitCode.PARTIAL),
    (RunOutcome(guard_failed=True), ExitCode.NOT_PUBLISHED),
    (RunOutcome(orgs_blocked=True), ExitCode.AUTH),
    (RunOutcome(output_failed=True), ExitCode.OUTPUT),
    (RunOutcome(internal_error=True), ExitCode.INTERNAL),
    (RunOutcome(interrupted=True), ExitCode.INTERRUPTED),
    (RunOutcome(terminated=True), ExitCode.TERMINATED),
    (
        RunOutcome(interrupted=True, incompatible_api=True, targets_failed=True),
        ExitCode.INTERRUPTED,
    ),
    (RunOutcome(terminated=True, orgs_blocked=True, guard_failed=True), ExitCode.TERMINATED),
    (RunOutcome(internal_error=True, output_failed=True), ExitCode.INTERNAL),
    (RunOutcome(incompatible_api=True, internal_error=True), ExitCode.INCOMPATIBLE_API),
    (RunOutcome(half_config=True), ExitCode.NOT_PUBLISHED),
    (RunOutcome(output_failed=True, half_config=True), ExitCode.OUTPUT),
    (RunOutcome(incompatible_api=True), ExitCode.INCOMPATIBLE_API),
    (RunOutcome(guard_failed=True, targets_failed=True), ExitCode.NOT_PUBLISHED),
    (RunOutcome(orgs_blocked=True, targets_failed=True), ExitCode.AUTH),
    (RunOutcome(orgs_blocked=True, guard_failed=True, targets_failed=True), ExitCode.AUTH),
    (RunOutcome(output_failed=True, targets_failed=True), ExitCode.OUTPUT),
    (RunOutcome(output_failed=True, orgs_blocked=True, guard_failed=True), ExitCode.OUTPUT),
    (RunOutcome(incompatible_api=True, targets_failed=True), ExitCode.INCOMPATIBLE_API),
    (RunOutcome(incompatible_api=True, guard_failed=True), ExitCode.INCOMPATIBLE_API),
    (RunOutcome(held=True), ExitCode.HELD),
    (RunOutcome(held=True, targets_failed=True), ExitCode.HELD),  # nothing was published
    (RunOutcome(held=True, orgs_blocked=True), ExitCode.HELD),  # a decision, not a retry
    (RunOutcome(output_failed=True, held=True), ExitCode.OUTPUT),
    (
        RunOutcome(
            incompatible_api=True,
            output_failed=True,
            orgs_blocked=True,
            guard_failed=True,
            targets_failed=True,
        ),
        ExitCode.INCOMPATIBLE_API,
    ),
]


@pytest.mark.parametrize(("outcome", "code"), EXIT_CODE_CASES)
def test_exit_code_is_decided_by_precedence(outcome: RunOutcome, code: ExitCode) -> None:
    assert decide_exit_code(outcome) is code


def test_every_outcome_has_exactly_one_place_in_the_precedence() -> None:
    names = [name for name, _ in EXIT_CODE_PRECEDENCE]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(RunOutcome))


def test_the_outcome_of_parts_holds_every_fact_of_any_part() -> None:
    parts = [RunOutcome(targets_failed=True), RunOutcome(output_failed=True), RunOutcome()]
    assert combine_outcomes(parts) == RunOutcome(targets_failed=True, output_failed=True)
    assert decide_exit_code(combine_outcomes(parts)) is ExitCode.OUTPUT
    assert combine_outcomes([]) == RunOutcome()


def test_every_exit_code_has_its_meaning_for_the_docs() -> None:
    """docs/exit-codes-and-errors.md is generated from EXIT_CODE_DOCS (and the precedence
    sentence from EXIT_CODE_PRECEDENCE): a code without an entry would stop `make docs`."""
    assert set(EXIT_CODE_DOCS) == set(ExitCode)
    assert all(doc.meaning and doc.published for doc in EXIT_CODE_DOCS.values())


def test_a_failure_record_is_frozen_and_redacted_once_built() -> None:
    error = RetryableError(
        "server said: Bearer s3cr3t",
        org="acme",
        model="m",
        status=500,
        attempts=3,
        error_type=ErrorType.SERVER_ERROR,
    )
    failure = error.failure(["s3cr3t"])
    assert failure == TargetFailure(
        org="acme",
        model="m",
        status=500,
        error_type=ErrorType.SERVER_ERROR,
        detail="server said: Bearer [REDACTED]",
        attempts=3,
        message=failure.message,
    )
    assert "s3cr3t" not in failure.message
    assert "acme/m" in failure.message
    with pytest.raises(dataclasses.FrozenInstanceError):
        failure.detail = "changed"  # type: ignore[misc]


def test_a_registry_that_fails_every_model_costs_a_bounded_summary_manifest_and_record(
    start_simulator: Any, tmp_path: Path
) -> None:
    """150 failed models: the summary, the manifest and the run record list the first 100
    (sorted) and count the rest, and the text summary says where the first 100 are."""
    registry = start_simulator(orgs=1, models_per_org=160)
    failing = registry.targets()[:150]
    registry.set_faults(FaultPlan(not_found=frozenset(f"{o}/{m}" for o, m in failing)))
    document = config_document(registry, tmp_path / "out", output_settings={"min_success_ratio": 0})
    summary = extract(
        parse_config(document, env={"MODEL_REGISTRY_TOKEN": TOKEN}),
        "2026-01-01",
        allow_backdate=True,
    )
    assert summary.published and summary.failure_count == 150
    assert [f.model for f in summary.failures] == [m for _, m in failing[:MAX_LISTED]]
    assert summary.omitted == {"failures": 50}
    manifest = json.loads(
        next((tmp_path / "out").glob("model_versions/*/_manifest.json")).read_text()
    )
    assert len(manifest["failures"]) == MAX_LISTED and manifest["omitted"] == {"failures": 50}
    record = json.loads(Path(summary.record or "").read_text())
    assert len(record["failures"]) == MAX_LISTED and record["omitted"] == {"failures": 50}
    assert "and 140 more failure(s), the first 100 are listed in" in summary.render_text()
