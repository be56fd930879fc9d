"""The exception hierarchy, split by what the caller must do, and the exit code each maps to.

Every exit code the CLI can return is defined here and nowhere else, so the documentation (whose
tables `make docs` generates from `connector.error_docs`), the library's
`RunSummary.exit_code` and the CLI cannot drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import IntEnum, StrEnum
from typing import Any, Self

from connector.redaction import printable, redact


class ExitCode(IntEnum):
    """Process exit codes; what each means for the operator is in `connector.error_docs`."""

    OK = 0
    INTERNAL = 1  # a bug: an exception the connector did not expect
    CONFIG = 2  # bad configuration or command-line usage; nothing was called
    PARTIAL = 3  # published, but some targets failed
    AUTH = 4  # a token was rejected (401/403) for at least one org
    INCOMPATIBLE_API = 5  # the registry answered 426: upgrade the connector; nothing published
    LOCK_HELD = 6  # another run holds the output lock; nothing done
    OUTPUT = 7  # the dataset could not be written or published
    NOT_PUBLISHED = 8  # too few targets succeeded (publish guard); nothing published
    SHARDS_INCOMPLETE = 9  # publish --shards: a shard is missing, stale or duplicated
    HELD = 10  # a check held the snapshot: kept under _held/ for `connector accept`
    STALE = 11  # `connector status --max-age`: the newest snapshot is older than that
    INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C) or a stop request; nothing published
    TERMINATED = 143  # stopped by SIGTERM (cron wrapper, Kubernetes, Airflow); nothing published

    @property
    def outcome(self) -> str:
        """The outcome word of summaries: the name, except that both signals are `interrupted`."""
        return "interrupted" if self is ExitCode.TERMINATED else self.name.lower()


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(ConnectorError):
    """The configuration or the command line is invalid; `problems` lists every one found."""

    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s){where}:\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its problems (a part process returns errors by pickle): the default
        would call the class with the message as its only argument."""
        return (_rebuild_config_error, (type(self), self.problems, self.source))


def _rebuild_config_error(
    kind: type[ConfigError], problems: list[str], source: str | None
) -> ConfigError:
    error = kind.__new__(kind)
    ConfigError.__init__(error, problems, source)
    return error


class OutputError(ConnectorError):
    """The dataset could not be written, published or read."""

    exit_code = ExitCode.OUTPUT


class LockHeldError(ConnectorError):
    """Another run holds the lock on the output location."""

    exit_code = ExitCode.LOCK_HELD


class ShardsError(ConnectorError):
    """The staged shards of a date do not make one snapshot: one is missing, was staged for
    another configuration or date, or holds targets that belong to another shard."""

    exit_code = ExitCode.SHARDS_INCOMPLETE


class NoDataError(ConnectorError):
    """The dataset holds too little to answer the question (e.g. a report needs two snapshots)."""

    exit_code = ExitCode.CONFIG


class MemoryLimitError(ConnectorError):
    """A report needs more memory than its limit allows, even spilling to disk: raise the limit
    (`connector report --memory-limit`) or narrow the window."""

    exit_code = ExitCode.CONFIG


class ErrorType(StrEnum):
    """The connector's own word for why a target failed: the closed vocabulary of every failure
    record's `error_type`; `connector.error_docs` says what each means and what the connector does.

    The registry's envelope `type` is never one of these: it stays in `server_error_type`.
    """

    # The registry answered with an error status.
    BAD_REQUEST = "bad_request"  # 400
    AUTHENTICATION = "authentication_error"  # 401
    PERMISSION = "permission_error"  # 403
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409
    VALIDATION = "validation_error"  # 422
    UPGRADE_REQUIRED = "upgrade_required"  # 426
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    API_ERROR = "api_error"  # any other non-2xx status
    # No usable answer.
    TIMEOUT = "timeout"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECTION_ERROR = "connection_error"
    TLS_ERROR = "tls_error"
    REDIRECT_REFUSED = "redirect_refused"
    INVALID_TOKEN = "invalid_token"
    INSUFFICIENT_CREDITS = "insufficient_credits"  # a 429 whose detail says: out of credits
    REQUEST_ERROR = "request_error"
    # A 2xx answer whose body cannot be used.
    INVALID_JSON = "invalid_json"
    INVALID_PAYLOAD = "invalid_payload"
    DUPLICATE_VERSION = "duplicate_version"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    LISTING_UNBOUNDED = "listing_unbounded"
    LISTING_INCOMPLETE = "listing_incomplete"
    # The connector itself.
    INVALID_SLUG = "invalid_slug"
    SKIPPED = "skipped"
    INTERNAL_ERROR = "internal_error"


class TargetError(ConnectorError):
    """Fetching or flattening one (org, model) failed. The subclass says what the caller must
    do; the facts (HTTP status, `error_type`, the server's type and detail) are attributes."""

    error_type: ErrorType = ErrorType.INTERNAL_ERROR

    def __init__(
        self,
        detail: str,
        *,
        org: str | None = None,
        model: str | None = None,
        status: int | None = None,
        error_type: ErrorType | None = None,
        server_error_type: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
        request: str | None = None,
    ) -> None:
        """`error_type` is the connector's own word for the failure; `server_error_type` the
        `type` of the registry's error envelope, kept beside it and never in its place;
        `retry_after` the seconds a Retry-After header asked for; `request` the call that got
        the failed answer (`GET /api/v1/...`: method and path, never a credential)."""
        self.detail = detail
        self.request = request
        self.server_error_type = server_error_type
        self.org = org
        self.model = model
        self.status = status
        if error_type is not None:
            self.error_type = ErrorType(error_type)
        self.errors = errors or []
        self.attempts = attempts
        self.retry_after = retry_after
        super().__init__(detail)

    def __str__(self) -> str:
        # model None: a call about the whole org (listModels)
        target = f"{self.org}/{self.model}" if self.model is not None else self.org or "request"
        status = f"HTTP {self.status} " if self.status is not None else ""
        server = (
            f" (server: {self.server_error_type})"
            if self.server_error_type and self.server_error_type != self.error_type
            else ""
        )
        text = f"{target}: {status}{self.error_type}{server}: {self.detail}"
        if self.errors:
            text += " [" + "; ".join(_format_validation_error(e) for e in self.errors) + "]"
        if self.attempts > 1:
            text += f" (after {self.attempts} attempts)"
        return text

    def evolve(self, **changes: Any) -> Self:
        """A copy with `changes`, for a boundary that knows more (e.g. which call failed); an
        exception already raised is never changed after the fact."""
        clone = copy.copy(self)
        clone.__dict__.update(changes)
        clone.args = (clone.detail,)
        return clone

    def failure(self, secrets: Iterable[str] = ()) -> TargetFailure:
        """The frozen record of this failure, with every secret scrubbed from its text."""
        secrets = list(secrets)
        return TargetFailure(
            org=self.org or "",
            model=self.model,
            status=self.status,
            error_type=self.error_type,
            server_error_type=(
                printable(redact(self.server_error_type, secrets))
                if self.server_error_type is not None
                else None
            ),
            # Escaped too: a newline or terminal escape a server sent must not forge a log or
            # summary line, and a lone surrogate must not break the encoder that prints it.
            detail=printable(redact(self.detail, secrets)),
            attempts=self.attempts,
            message=printable(redact(str(self), secrets)),
        )


class RetryableError(TargetError):
    """Transient (429, 500/502/503/504, a timeout, a dropped connection): retried under
    `retry.*`; if it persists past the last attempt, the target fails with it."""


class TargetFailedError(TargetError):
    """Fatal for this target and never retried: record the failure, go on with the others."""


class PayloadError(TargetFailedError):
    """A 2xx answer whose body cannot be used; `raw`, the body that failed validation, is what
    `_rejected/` keeps (None for a body too large to read)."""

    error_type = ErrorType.INVALID_PAYLOAD

    def __init__(self, detail: str, *, raw: bytes | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.raw = raw


class OrgStoppedError(TargetError):
    """The org can take no more calls this run: no more calls (or retries) for it, its other
    models are skipped. As such (a 429 saying the org is out of credits, which waiting does
    not clear) it fails its targets like any failure; the publish guard decides the exit."""

    error_type = ErrorType.INSUFFICIENT_CREDITS


class OrgBlockedError(OrgStoppedError):
    """401/403: the org's token is missing, wrong or may not read the org; the org is stopped
    as above, and the run exits 4."""

    error_type = ErrorType.AUTHENTICATION
    exit_code = ExitCode.AUTH


class RunAbortedError(TargetError):
    """426: the registry no longer accepts this client; the run stops and publishes nothing."""

    error_type = ErrorType.UPGRADE_REQUIRED
    exit_code = ExitCode.INCOMPATIBLE_API


class SkippedError(TargetError):
    """The target was not attempted: an earlier failure made the call pointless, or the run
    stopped. Nothing to retry."""

    error_type = ErrorType.SKIPPED


@dataclass(frozen=True)
class TargetFailure:
    """How one (org, model) failed: built once, where the target ends, and never changed.

    `detail` and `message` are already redacted (servers echo headers back in error pages), so
    the log line, the summary, the manifest and `_rejected/` all carry the same scrubbed text.
    """

    org: str
    model: str | None  # None for a call about the whole org (listModels)
    status: int | None
    error_type: ErrorType
    detail: str
    attempts: int
    message: str  # the one-line text for logs and the console (not part of the manifest)
    server_error_type: str | None = None  # the registry's envelope `type`, if it sent one

    def __post_init__(self) -> None:
        # The vocabulary is closed: a word outside it fails here, where the record is built.
        object.__setattr__(self, "error_type", ErrorType(self.error_type))

    def to_dict(self) -> dict[str, Any]:
        """The record in the summary JSON, the manifest's `failures` and `_rejected/` files."""
        return {
            "org": self.org,
            "model": self.model,
            "status": self.status,
            "error_type": self.error_type.value,
            "server_error_type": self.server_error_type,
            "detail": self.detail,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TargetFailure:
        """A failure read back from `to_dict` (a staged part's record): untrusted, so every
        field is checked; ShardsError says which is wrong."""
        status, word = record.get("status"), record.get("error_type")
        org, model = record.get("org"), record.get("model")
        server = record.get("server_error_type")
        detail, attempts = record.get("detail", ""), record.get("attempts", 0)
        where = f"{str(org)[:100]}/{str(model)[:200]}"
        if word not in set(ErrorType):
            raise ShardsError(
                f"the staged failure of {where} has error_type {str(word)[:60]!r}, which this "
                "connector does not know (staged by another version?); re-run that shard"
            )
        typed = (
            isinstance(org, str)
            and (model is None or isinstance(model, str))
            and (status is None or (isinstance(status, int) and not isinstance(status, bool)))
            and (server is None or isinstance(server, str))
            and isinstance(detail, str)
            and isinstance(attempts, int)
            and not isinstance(attempts, bool)
        )
        if not typed:
            raise ShardsError(f"the staged failure of {where} is not a failure record")
        assert isinstance(org, str) and isinstance(detail, str) and isinstance(attempts, int)
        http = f"HTTP {status} " if status is not None else ""
        return cls(
            org=org,
            model=model,
            status=status,
            error_type=ErrorType(word),
            server_error_type=server,
            detail=detail,
            attempts=attempts,
            message=f"{where}: {http}{word}: {detail}",
        )


def _format_validation_error(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error.get("loc") or [])
    msg = error.get("msg", "")
    return f"{loc}: {msg}" if loc else str(msg)


# What each HTTP status is called; a status outside the table: 5xx is `server_error`, any
# other `api_error`.
STATUS_ERROR_TYPES: dict[int, ErrorType] = {
    400: ErrorType.BAD_REQUEST,
    401: ErrorType.AUTHENTICATION,
    403: ErrorType.PERMISSION,
    404: ErrorType.NOT_FOUND,
    409: ErrorType.CONFLICT,
    422: ErrorType.VALIDATION,
    426: ErrorType.UPGRADE_REQUIRED,
    429: ErrorType.RATE_LIMITED,
}

# The retry rule, in one place: these statuses, and these failures to get an answer at all.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRYABLE_ERROR_TYPES = frozenset(
    {ErrorType.TIMEOUT, ErrorType.CONNECT_TIMEOUT, ErrorType.CONNECTION_ERROR}
)
_STATUS_TYPES = frozenset(STATUS_ERROR_TYPES.values()) | {
    ErrorType.SERVER_ERROR,
    ErrorType.API_ERROR,
}

# The failures whose action is not "fail this target" (retrying is decided by is_retryable).
_ACTIONS: dict[ErrorType, type[TargetError]] = {
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


def status_error_type(status: int) -> ErrorType:
    """The connector's word for a non-2xx status."""
    if status in STATUS_ERROR_TYPES:
        return STATUS_ERROR_TYPES[status]
    return ErrorType.SERVER_ERROR if 500 <= status <= 599 else ErrorType.API_ERROR


def is_retryable(error_type: ErrorType, status: int | None = None) -> bool:
    """The one retry rule: a retryable status (an error answer, not a 2xx body that timed out
    or was too large), or a timeout or a dropped connection; never another 4xx, a 501, a bad
    body, a TLS failure or a redirect."""
    if error_type in RETRYABLE_ERROR_TYPES:
        return True
    return error_type in _STATUS_TYPES and status in RETRYABLE_STATUSES


def error_class(error_type: ErrorType, status: int | None = None) -> type[TargetError]:
    """What the caller must do about a failure, as the class to raise."""
    if is_retryable(error_type, status):
        return RetryableError
    return _ACTIONS.get(error_type, TargetFailedError)


def target_error(
    error_type: ErrorType, detail: str, *, status: int | None = None, **context: Any
) -> TargetError:
    """The exception for a classified failure: its class from `error_class`, so whether it is
    retried, blocks the org or aborts the run is decided in this module and nowhere else."""
    return error_class(error_type, status)(detail, error_type=error_type, status=status, **context)


@dataclass(frozen=True)
class RunOutcome:
    """What happened in one run, as plain facts; `decide_exit_code` turns it into one code.

    Adding an outcome is two lines: a field here and its row in `EXIT_CODE_PRECEDENCE`.
    """

    terminated: bool = False  # stopped by SIGTERM before it published
    interrupted: bool = False  # stopped by SIGINT, a stop request or KeyboardInterrupt
    incompatible_api: bool = False  # the registry answered 426
    internal_error: bool = False  # a bug, or a shard process that died (--processes)
    output_failed: bool = False  # the dataset could not be written or published
    held: bool = False  # a check held the snapshot: kept under _held/, nothing published
    orgs_blocked: bool = False  # a token was refused (401/403) for at least one org
    half_config: bool = False  # the run misses models the date's partition holds: not published
    discovery_failed: bool = False  # an org's model listing failed: not published
    guard_failed: bool = False  # fewer targets succeeded than min_success_ratio: not published
    targets_failed: bool = False  # at least one target failed


# Most actionable first: the first outcome that applies decides the exit code.
EXIT_CODE_PRECEDENCE: tuple[tuple[str, ExitCode], ...] = (
    ("terminated", ExitCode.TERMINATED),
    ("interrupted", ExitCode.INTERRUPTED),
    ("incompatible_api", ExitCode.INCOMPATIBLE_API),
    ("internal_error", ExitCode.INTERNAL),
    ("output_failed", ExitCode.OUTPUT),
    # Before AUTH: a held day waits for a person's decision and must not be retried (a retry
    # observes another moment); exit 4 would read as "published if the guard allowed". The
    # refused token is still named in the summary's failures (and usually is why a check held).
    ("held", ExitCode.HELD),
    ("orgs_blocked", ExitCode.AUTH),
    ("half_config", ExitCode.NOT_PUBLISHED),
    ("discovery_failed", ExitCode.NOT_PUBLISHED),
    ("guard_failed", ExitCode.NOT_PUBLISHED),
    ("targets_failed", ExitCode.PARTIAL),
)


def decide_exit_code(outcome: RunOutcome) -> ExitCode:
    """The one place a run's exit code is decided (the precedence the docs state)."""
    return next(
        (code for name, code in EXIT_CODE_PRECEDENCE if getattr(outcome, name)), ExitCode.OK
    )


def combine_outcomes(outcomes: Iterable[RunOutcome]) -> RunOutcome:
    """The outcome of a run made of parts (shard processes): a fact holds if it holds for one."""
    outcomes = list(outcomes)
    return RunOutcome(
        **{f.name: any(getattr(o, f.name) for o in outcomes) for f in fields(RunOutcome)}
    )
