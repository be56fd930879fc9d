"""The exception hierarchy, split by what the caller must do, and the exit code each maps to.

Every exit code the CLI can return is defined here and nowhere else, so the README table, the
library's `RunSummary.exit_code` and the CLI cannot drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, Self

from connector.redaction import printable, redact


class ExitCode(IntEnum):
    """Process exit codes; documented in the README's "Exit codes" table."""

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


class TargetError(ConnectorError):
    """Fetching or flattening one (org, model) failed; the run goes on with the others."""

    error_type = "target_error"

    def __init__(
        self,
        detail: str,
        *,
        org: str | None = None,
        model: str | None = None,
        status: int | None = None,
        error_type: str | None = None,
        server_error_type: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        attempts: int = 1,
        raw: bytes | None = None,
    ) -> None:
        """`error_type` is the connector's own word for the failure; `server_error_type` the
        `type` of the registry's error envelope, kept beside it and never in its place."""
        self.detail = detail
        self.server_error_type = server_error_type
        self.raw = raw  # the offending body, kept for inspection under _rejected/
        self.org = org
        self.model = model
        self.status = status
        if error_type is not None:
            self.error_type = error_type
        self.errors = errors or []
        self.attempts = attempts
        super().__init__(detail)

    def __str__(self) -> str:
        target = f"{self.org}/{self.model}" if self.org or self.model else "request"
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


@dataclass(frozen=True)
class TargetFailure:
    """How one (org, model) failed: built once, where the target ends, and never changed.

    `detail` and `message` are already redacted (servers echo headers back in error pages), so
    the log line, the summary, the manifest and `_rejected/` all carry the same scrubbed text.
    """

    org: str
    model: str | None  # None for a call about the whole org (listModels)
    status: int | None
    error_type: str
    detail: str
    attempts: int
    message: str  # the one-line text for logs and the console (not part of the manifest)
    server_error_type: str | None = None  # the registry's envelope `type`, if it sent one

    def to_dict(self) -> dict[str, Any]:
        """The record in the summary JSON, the manifest's `failures` and `_rejected/` files."""
        return {
            "org": self.org,
            "model": self.model,
            "status": self.status,
            "error_type": self.error_type,
            "server_error_type": self.server_error_type,
            "detail": self.detail,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> TargetFailure:
        """A failure read back from `to_dict` (a staged shard's record)."""
        status = record.get("status")
        where = f"{record.get('org')}/{record.get('model')}"
        http = f"HTTP {status} " if status is not None else ""
        return cls(
            org=str(record.get("org") or ""),
            model=record.get("model"),
            status=status,
            error_type=str(record.get("error_type")),
            server_error_type=record.get("server_error_type"),
            detail=str(record.get("detail")),
            attempts=int(record.get("attempts") or 0),
            message=f"{where}: {http}{record.get('error_type')}: {record.get('detail')}",
        )


def _format_validation_error(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error.get("loc") or [])
    msg = error.get("msg", "")
    return f"{loc}: {msg}" if loc else str(msg)


class RegistryAPIError(TargetError):
    """The registry answered with a non-2xx status (its error envelope parsed where possible)."""

    error_type = "api_error"
    retry_after: float | None = None  # seconds, from the Retry-After header


class BadRequestError(RegistryAPIError):
    """400: the registry rejected the request as malformed."""

    error_type = "bad_request"


class AuthenticationError(RegistryAPIError):
    """401/403: the org's token is missing, wrong or lacks permission; stop calling for that org."""

    error_type = "authentication_error"


class PermissionDeniedError(AuthenticationError):
    """403: the token is valid but may not read this org."""

    error_type = "permission_error"


class NotFoundError(RegistryAPIError):
    """404: the org or model does not exist (or is invisible to this token)."""

    error_type = "not_found"


class ConflictError(RegistryAPIError):
    """409: the registry reports a conflicting state for this resource."""

    error_type = "conflict"


class UnprocessableEntityError(RegistryAPIError):
    """422: the registry's validation rejected the request."""

    error_type = "validation_error"


class IncompatibleAPIError(RegistryAPIError):
    """426: the registry no longer accepts this client; the run aborts and publishes nothing."""

    error_type = "upgrade_required"
    exit_code = ExitCode.INCOMPATIBLE_API


class RateLimitedError(RegistryAPIError):
    """429 persisted after every retry."""

    error_type = "rate_limited"


class ServerError(RegistryAPIError):
    """5xx persisted after every retry."""

    error_type = "server_error"


class TransportError(TargetError):
    """No usable HTTP response: connection refused or reset, timeout, TLS failure, bad redirect."""

    error_type = "transport_error"

    def __init__(self, detail: str, *, retryable: bool = True, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retryable = retryable


class PayloadError(TargetError):
    """The registry answered 2xx but the body is not a valid version list; `raw` is kept."""

    error_type = "invalid_payload"


class SkippedError(TargetError):
    """The target was not attempted because an earlier failure made the call pointless."""

    error_type = "skipped"


STATUS_ERRORS: dict[int, type[RegistryAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    426: IncompatibleAPIError,
    429: RateLimitedError,
}


def error_class_for_status(status: int) -> type[RegistryAPIError]:
    """The exception class for an HTTP status: the documented ones, then 5xx, then generic."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if 500 <= status <= 599:
        return ServerError
    return RegistryAPIError


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
    ("orgs_blocked", ExitCode.AUTH),
    ("half_config", ExitCode.NOT_PUBLISHED),
    ("discovery_failed", ExitCode.NOT_PUBLISHED),
    ("guard_failed", ExitCode.NOT_PUBLISHED),
    ("targets_failed", ExitCode.PARTIAL),
)


def decide_exit_code(outcome: RunOutcome) -> ExitCode:
    """The one place a run's exit code is decided (the README's precedence rule)."""
    return next(
        (code for name, code in EXIT_CODE_PRECEDENCE if getattr(outcome, name)), ExitCode.OK
    )


def combine_outcomes(outcomes: Iterable[RunOutcome]) -> RunOutcome:
    """The outcome of a run made of parts (shard processes): a fact holds if it holds for one."""
    outcomes = list(outcomes)
    return RunOutcome(
        **{f.name: any(getattr(o, f.name) for o in outcomes) for f in fields(RunOutcome)}
    )
