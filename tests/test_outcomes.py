"""One run's outcome: the exit code decided in one pure function, failures as frozen records."""

from __future__ import annotations

import dataclasses

import pytest

from connector.errors import (
    EXIT_CODE_DOCS,
    EXIT_CODE_PRECEDENCE,
    ErrorType,
    ExitCode,
    RetryableError,
    RunOutcome,
    TargetFailure,
    combine_outcomes,
    decide_exit_code,
)

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
