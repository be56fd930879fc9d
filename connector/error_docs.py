"""What each exit code and each error type means, in words: the texts of the docs' tables.

`make docs` generates the exit-code and error-type tables of `docs/exit-codes-and-errors.md`
from these two mappings (and `errors.EXIT_CODE_PRECEDENCE`), and refuses a code or a word that
has no entry here, so the documentation cannot drift from `connector.errors`.
"""

from __future__ import annotations

from typing import NamedTuple

from connector.errors import ErrorType, ExitCode


class ExitCodeDoc(NamedTuple):
    """What an exit code tells the operator, for docs/exit-codes-and-errors.md (generated)."""

    meaning: str
    published: str  # whether the run published its snapshot


# Written for the person an alert wakes up. A new ExitCode needs its entry here: `make docs`
# fails without one.
EXIT_CODE_DOCS: dict[ExitCode, ExitCodeDoc] = {
    ExitCode.OK: ExitCodeDoc("every target succeeded", "yes"),
    ExitCode.INTERNAL: ExitCodeDoc("a bug: an unexpected exception (please report it)", "no"),
    ExitCode.CONFIG: ExitCodeDoc(
        "invalid configuration or command line (a `--date` before yesterday without "
        "`--allow-backdate`, or in the future), nothing was called (for `report`: too few "
        "snapshots to compare, or a `--memory-limit` too small for the window)",
        "no",
    ),
    ExitCode.PARTIAL: ExitCodeDoc(
        "some targets failed; the rest was published (see `failures`)", "yes"
    ),
    ExitCode.AUTH: ExitCodeDoc(
        "a token was rejected (401/403) for at least one org", "if the guard allowed"
    ),
    ExitCode.INCOMPATIBLE_API: ExitCodeDoc(
        "the registry answered 426: upgrade the connector", "no"
    ),
    ExitCode.LOCK_HELD: ExitCodeDoc("another run holds the output lock; nothing was done", "no"),
    ExitCode.OUTPUT: ExitCodeDoc("the dataset could not be written or published", "no"),
    ExitCode.NOT_PUBLISHED: ExitCodeDoc(
        "fewer targets succeeded than `min_success_ratio`, or the run does not target every "
        "model the date's partition holds (see `--replace`)",
        "no",
    ),
    ExitCode.SHARDS_INCOMPLETE: ExitCodeDoc(
        "`publish --shards N`: a shard is missing, stale (staged for another date or "
        "configuration) or duplicated; none is left when an earlier publish held the day "
        "(the error says so: accept or discard it)",
        "no",
    ),
    ExitCode.HELD: ExitCodeDoc(
        "a check of the staged day against the previous one (or the config) failed: the "
        "snapshot is kept under `_held/<date>/<run_id>/` and the published ones are unchanged; "
        "review it (the summary names each failing check, `connector status` lists held days), "
        "then `connector accept` or `connector discard` it. Do not retry: a new run observes "
        "another moment",
        "no (held)",
    ),
    ExitCode.STALE: ExitCodeDoc(
        "`connector status --max-age`: the newest snapshot is older than that, or there is none",
        "n/a",
    ),
    ExitCode.INTERRUPTED: ExitCodeDoc(
        "stopped by SIGINT (Ctrl-C) or `Interrupt.request()`; summary outcome `interrupted`",
        "no",
    ),
    ExitCode.TERMINATED: ExitCodeDoc(
        "stopped by SIGTERM (cron wrapper, Kubernetes, Airflow); summary outcome `interrupted`",
        "no",
    ),
}


class ErrorTypeDoc(NamedTuple):
    """What an `error_type` means, for the generated docs (docs/exit-codes-and-errors.md)."""

    happened: str
    action: str  # what the connector does about it


_FAILS = "the model fails"
_KEPT = "the model fails; the body is kept under `_rejected/`"

# A new ErrorType needs its entry here: `make docs` fails without one.
ERROR_TYPE_DOCS: dict[ErrorType, ErrorTypeDoc] = {
    ErrorType.BAD_REQUEST: ErrorTypeDoc("400", _FAILS),
    ErrorType.AUTHENTICATION: ErrorTypeDoc(
        "401", "the org is blocked: its other models are `skipped`; exit code 4"
    ),
    ErrorType.PERMISSION: ErrorTypeDoc("403", "the org is blocked, as for 401; exit code 4"),
    ErrorType.NOT_FOUND: ErrorTypeDoc(
        "404", "the model fails (a `getModelVersion` 404 drops that version instead)"
    ),
    ErrorType.CONFLICT: ErrorTypeDoc("409", _FAILS),
    ErrorType.VALIDATION: ErrorTypeDoc(
        "422 (the registry's validation errors are in the detail)", _FAILS
    ),
    ErrorType.UPGRADE_REQUIRED: ErrorTypeDoc(
        "426", "the run aborts and publishes nothing; exit code 5"
    ),
    ErrorType.RATE_LIMITED: ErrorTypeDoc(
        "429 after every retry", "retried (every worker slows down), then the model fails"
    ),
    ErrorType.SERVER_ERROR: ErrorTypeDoc(
        "5xx",
        "500, 502, 503, 504 retried, then the model fails; another 5xx (501) fails it at once",
    ),
    ErrorType.API_ERROR: ErrorTypeDoc("another non-2xx status (e.g. 405, 410, 418)", _FAILS),
    ErrorType.TIMEOUT: ErrorTypeDoc(
        "no complete answer within `timeout_seconds`", "retried, then the model fails"
    ),
    ErrorType.CONNECT_TIMEOUT: ErrorTypeDoc(
        "no connection within `connect_timeout_seconds`", "retried, then the model fails"
    ),
    ErrorType.CONNECTION_ERROR: ErrorTypeDoc(
        "connection refused, reset or dropped mid-answer", "retried, then the model fails"
    ),
    ErrorType.TLS_ERROR: ErrorTypeDoc("the certificate or the TLS handshake failed", _FAILS),
    ErrorType.REDIRECT_REFUSED: ErrorTypeDoc("a 3xx (redirects are not followed)", _FAILS),
    ErrorType.INVALID_TOKEN: ErrorTypeDoc(
        "the token cannot be sent as a header (stray whitespace, control characters)", _FAILS
    ),
    ErrorType.REQUEST_ERROR: ErrorTypeDoc(
        "the request could not be made (e.g. a malformed `Location`)", _FAILS
    ),
    ErrorType.INVALID_JSON: ErrorTypeDoc(
        "a 2xx body that is not JSON (an HTML page, empty, truncated)", _KEPT
    ),
    ErrorType.INVALID_PAYLOAD: ErrorTypeDoc("a 2xx JSON body of the wrong shape or values", _KEPT),
    ErrorType.DUPLICATE_VERSION: ErrorTypeDoc("a version listed twice", _KEPT),
    ErrorType.PAYLOAD_TOO_LARGE: ErrorTypeDoc(
        "a body over `max_response_bytes`",
        "the model fails (nothing is kept: the body was not read)",
    ),
    ErrorType.LISTING_UNBOUNDED: ErrorTypeDoc(
        "`listModels` said another page follows past the pages its `total_pages`/`total` "
        "allow (or the hard cap)",
        "the org's discovery fails",
    ),
    ErrorType.LISTING_INCOMPLETE: ErrorTypeDoc(
        "`listModels` ended with fewer distinct models than its `total`",
        "the org's discovery fails; nothing is published",
    ),
    ErrorType.INSUFFICIENT_CREDITS: ErrorTypeDoc(
        "a 429 whose detail mentions credit: the org is out of credits",
        "not retried; the org is stopped: its other models are `skipped`; no exit code of its "
        "own (3, or 8 through the publish guard)",
    ),
    ErrorType.INVALID_SLUG: ErrorTypeDoc(
        "an org or model that is not a valid slug, or a listed version that cannot be one URL "
        "path segment (empty, `.`, `..`, containing `/`), reached the client",
        "the model fails before that request",
    ),
    ErrorType.SKIPPED: ErrorTypeDoc(
        "not attempted: its org was blocked, or the run aborted or was stopped",
        "recorded, nothing retried",
    ),
    ErrorType.INTERNAL_ERROR: ErrorTypeDoc(
        "a bug while handling this model",
        "the model fails, the traceback is logged; the run goes on",
    ),
}
