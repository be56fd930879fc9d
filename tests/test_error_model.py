"""The error model: classes by what the caller must do, one retry rule, and the closed
`error_type` vocabulary, each word documented in code (`ERROR_TYPE_DOCS`)."""

from __future__ import annotations

import pickle

import pytest
import requests
import urllib3

from connector import errors
from connector.errors import (
    RETRYABLE_ERROR_TYPES,
    RETRYABLE_STATUSES,
    ConfigError,
    ErrorType,
    OrgBlockedError,
    OrgStoppedError,
    PayloadError,
    RetryableError,
    RunAbortedError,
    ShardsError,
    SkippedError,
    TargetError,
    TargetFailedError,
    TargetFailure,
    error_class,
    is_retryable,
    status_error_type,
    target_error,
)
from connector.extraction.guards import SnapshotDateError
from connector.http.client import _Call, _transport_error


def test_every_word_of_the_vocabulary_says_what_happened_and_what_is_done() -> None:
    """The docs' table is generated from ERROR_TYPE_DOCS: a word without an entry would stop
    `make docs`; this says so before the docs are built."""
    assert set(errors.ERROR_TYPE_DOCS) == set(ErrorType)
    assert all(doc.happened and doc.action for doc in errors.ERROR_TYPE_DOCS.values())


def test_a_failure_record_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="not_a_word"):
        TargetFailure(
            org="acme",
            model="m",
            status=None,
            error_type="not_a_word",  # type: ignore[arg-type]
            detail="d",
            attempts=1,
            message="m",
        )
    with pytest.raises(ValueError, match="target_error"):
        TargetFailedError("d", error_type="target_error")  # type: ignore[arg-type]


def test_a_staged_failure_with_an_unknown_word_is_a_shards_error() -> None:
    record = {"org": "acme", "model": "m", "status": 500, "error_type": "target_error"}
    with pytest.raises(ShardsError, match=r"acme/m has error_type 'target_error'"):
        TargetFailure.from_dict(record)
    known = TargetFailure.from_dict({**record, "error_type": "server_error", "detail": "x"})
    assert known.error_type is ErrorType.SERVER_ERROR
    assert known.to_dict()["error_type"] == "server_error"


# --- the one retry rule -------------------------------------------------------------------


REPRESENTATIVE = [301, 304, 400, 401, 403, 404, 409, 418, 422, 426, 429, 499]
REPRESENTATIVE += [500, 501, 502, 503, 504, 505, 599]


@pytest.mark.parametrize("status", REPRESENTATIVE)
def test_a_status_is_retried_exactly_when_the_rule_says(status: int) -> None:
    word = status_error_type(status)
    expected = status in {429, 500, 502, 503, 504}
    assert is_retryable(word, status) is expected
    error = target_error(word, "d", status=status, org="acme", model="m")
    assert isinstance(error, RetryableError) is expected
    assert (error.status, error.error_type) == (status, word)


def test_only_the_five_transient_statuses_are_ever_retried() -> None:
    """The property over every non-2xx status, in one test (not one item per status)."""
    retried = {s for s in range(300, 600) if is_retryable(status_error_type(s), s)}
    assert retried == {429, 500, 502, 503, 504}


TRANSPORT = [
    (requests.exceptions.ConnectTimeout("c"), ErrorType.CONNECT_TIMEOUT, True),
    (urllib3.exceptions.ConnectTimeoutError("c"), ErrorType.CONNECT_TIMEOUT, True),
    (requests.exceptions.ReadTimeout("r"), ErrorType.TIMEOUT, True),
    (urllib3.exceptions.ReadTimeoutError(None, "/", "r"), ErrorType.TIMEOUT, True),  # type: ignore[arg-type]
    (requests.exceptions.ConnectionError("refused"), ErrorType.CONNECTION_ERROR, True),
    (requests.exceptions.ChunkedEncodingError("cut"), ErrorType.CONNECTION_ERROR, True),
    (urllib3.exceptions.ProtocolError("reset"), ErrorType.CONNECTION_ERROR, True),
    (requests.exceptions.SSLError("bad cert"), ErrorType.TLS_ERROR, False),
    (urllib3.exceptions.SSLError("bad cert"), ErrorType.TLS_ERROR, False),
    (requests.exceptions.InvalidHeader("Bearer x\n"), ErrorType.INVALID_TOKEN, False),
    (requests.exceptions.InvalidURL("http://[bad"), ErrorType.REQUEST_ERROR, False),
    (requests.exceptions.TooManyRedirects("loop"), ErrorType.REQUEST_ERROR, False),
]


@pytest.mark.parametrize(
    ("exception", "word", "retried"), TRANSPORT, ids=[type(t[0]).__name__ for t in TRANSPORT]
)
def test_every_transport_failure_is_named_and_retried_by_the_one_rule(
    exception: requests.RequestException | urllib3.exceptions.HTTPError,
    word: ErrorType,
    retried: bool,
) -> None:
    error = _transport_error(exception, _Call("acme", "m", 2), [])
    assert error.error_type is word
    assert (error.org, error.model, error.attempts, error.status) == ("acme", "m", 2, None)
    assert isinstance(error, RetryableError) is retried
    assert is_retryable(word) is retried
    assert type(error) is (RetryableError if retried else TargetFailedError)


def test_retryable_words_are_only_failures_to_get_an_answer() -> None:
    assert {ErrorType.TIMEOUT, ErrorType.CONNECT_TIMEOUT, ErrorType.CONNECTION_ERROR} == (
        RETRYABLE_ERROR_TYPES
    )
    # a body that timed out, or was too large, on a retryable status: the word decides
    assert is_retryable(ErrorType.TIMEOUT, 200)
    assert not is_retryable(ErrorType.PAYLOAD_TOO_LARGE, 503)
    assert not is_retryable(ErrorType.INVALID_JSON, 200)
    for status in RETRYABLE_STATUSES:
        for word in (ErrorType.REDIRECT_REFUSED, ErrorType.SKIPPED, ErrorType.INTERNAL_ERROR):
            assert not is_retryable(word, status)


# --- classes by action ---------------------------------------------------------------------

ACTIONS: dict[ErrorType, type[TargetError]] = {
    ErrorType.AUTHENTICATION: OrgBlockedError,
    ErrorType.PERMISSION: OrgBlockedError,
    ErrorType.INSUFFICIENT_CREDITS: OrgStoppedError,
    ErrorType.UPGRADE_REQUIRED: RunAbortedError,
    ErrorType.SKIPPED: SkippedError,
    ErrorType.INVALID_JSON: PayloadError,
    ErrorType.INVALID_PAYLOAD: PayloadError,
    ErrorType.DUPLICATE_VERSION: PayloadError,
    ErrorType.PAYLOAD_TOO_LARGE: PayloadError,
    ErrorType.LISTING_UNBOUNDED: PayloadError,
    ErrorType.LISTING_INCOMPLETE: PayloadError,
}


@pytest.mark.parametrize("word", list(ErrorType))
def test_every_word_has_one_action(word: ErrorType) -> None:
    if word in RETRYABLE_ERROR_TYPES:
        expected: type[TargetError] = RetryableError
    else:
        expected = ACTIONS.get(word, TargetFailedError)
    assert error_class(word) is expected
    error = target_error(word, "detail", org="acme", model="m")
    assert type(error) is expected
    assert error.failure().error_type is word


@pytest.mark.parametrize(
    "cls",
    [PayloadError, OrgStoppedError, OrgBlockedError, RunAbortedError, SkippedError],
    ids=lambda c: c.__name__,
)
def test_a_class_default_word_leads_back_to_the_class(cls: type[TargetError]) -> None:
    assert error_class(cls.error_type) is cls


def test_only_the_action_classes_remain() -> None:
    """The per-status classes are gone: a status is an attribute, not a class."""
    for gone in (
        "RegistryAPIError",
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "ConflictError",
        "UnprocessableEntityError",
        "IncompatibleAPIError",
        "RateLimitedError",
        "ServerError",
        "TransportError",
    ):
        assert not hasattr(errors, gone), gone
    targets = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, TargetError)
    }
    assert targets == {
        "TargetError",
        "RetryableError",
        "TargetFailedError",
        "PayloadError",
        "OrgStoppedError",
        "OrgBlockedError",
        "RunAbortedError",
        "SkippedError",
    }


def test_blocking_and_aborting_carry_their_exit_codes() -> None:
    assert OrgBlockedError("d").exit_code == errors.ExitCode.AUTH
    # Out of credits stops the org's calls but is not an auth problem: no exit code of its own.
    assert OrgStoppedError("d").exit_code == errors.ExitCode.INTERNAL
    assert not isinstance(OrgStoppedError("d"), OrgBlockedError)
    assert RunAbortedError("d").exit_code == errors.ExitCode.INCOMPATIBLE_API


def test_only_a_payload_error_carries_a_body() -> None:
    """`_rejected/` keeps `raw`, and only a 2xx body that failed validation has one."""
    assert PayloadError("d", raw=b"<html>", status=200).raw == b"<html>"
    for status in (400, 404, 409, 422):
        assert not hasattr(target_error(status_error_type(status), "d", status=status), "raw")


def test_a_config_error_survives_pickling_with_its_problems() -> None:
    """A part process returns its errors by pickle: the problems and message come back whole,
    also for a subclass with another constructor."""
    for error in (ConfigError(["a: bad", "b: worse"], "x.yaml"), SnapshotDateError("--date x")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert copy.problems == error.problems and copy.source == error.source
        assert str(copy) == str(error)
