"""`RegistryClient`: one pooled HTTP session to the registry, with auth, deadlines and retries.

Retries go through tenacity rather than urllib3's `Retry` because the run needs to see every
attempt: a 429 must slow every worker (the shared `RateLimiter`), each retry is logged with its
attempt number, and the manifest records how many attempts a failure took. tenacity gives full
jitter (`wait_random_exponential`), attempt and elapsed-time stops, and an interruptible sleep.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from connector._version import __version__
from connector.config import RegistrySettings
from connector.credentials import Credential
from connector.errors import (
    ErrorType,
    OrgStoppedError,
    PayloadError,
    RetryableError,
    SkippedError,
    TargetError,
    target_error,
)
from connector.http import routes
from connector.http.budget import MEMORY_PER_BODY_BYTE, BudgetAbortedError, MemoryBudget, Share
from connector.http.deadline import AttemptDeadline, DeadlineAdapter, DeadlineMonitor
from connector.http.ratelimit import RateLimiter
from connector.http.responses import error_for_status, parse_payload
from connector.loggers import get_logger
from connector.redaction import redact

log = get_logger(__name__)

USER_AGENT = f"model-versions-connector/{__version__} python-requests/{requests.__version__}"
_READ_CHUNK = 64 * 1024
# Whether a failure is retried is decided once, where it is classified (`errors.is_retryable`):
# it is then a RetryableError. Built once: each instance is a reference cycle (a bound method of
# itself), which per call left 2,000 objects a run to the cyclic garbage collector.
_RETRYABLE = retry_if_exception_type(RetryableError)

# The contract's operationIds: requests are counted per operation in the summary and manifest.
LIST_MODEL_VERSIONS = "listModelVersions"
LIST_MODELS = "listModels"
GET_MODEL_VERSION = "getModelVersion"
OPERATIONS = (LIST_MODEL_VERSIONS, LIST_MODELS, GET_MODEL_VERSION)


@dataclass(frozen=True)
class _Call:
    """One attempt at one target: the context every error of that attempt is built with;
    `request` is its method and path (`routes.request_line`)."""

    org: str
    model: str | None
    attempt: int
    request: str | None = None

    def context(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "model": self.model,
            "attempts": self.attempt,
            "request": self.request,
        }


@dataclass(frozen=True)
class FetchResult:
    """A successful call of one API operation. `share`: for a version list, the part of the
    memory budget its body holds; the caller releases it once the rows are in the writer."""

    payload: Any
    body: bytes
    status: int
    attempts: int
    body_bytes: int
    elapsed_seconds: float
    share: Share | None = None
    request: str = ""  # method and path, for a body kept under _rejected/


class RegistryClient:
    """Reads the registry's `listModelVersions`, `listModels` and `getModelVersion`; thread-safe,
    one connection pool, deadline monitor, retry policy, rate limiter and org block for all."""

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        secrets: list[str] | None = None,
        rate_limiter: RateLimiter | None = None,
        cancelled: threading.Event | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:
        self._settings = settings
        self.memory = memory or MemoryBudget(settings.memory_budget_bytes)
        token = settings.token.get_secret_value()
        self._default = Credential(token, settings.auth_scheme)
        self._secrets = [token, *(secrets or [])]
        self._limiter = rate_limiter or RateLimiter(settings.max_requests_per_second)
        self._cancelled = cancelled or threading.Event()
        self._deadlines = DeadlineMonitor()
        self._blocked: dict[str, OrgStoppedError] = {}  # org -> the answer that stopped it
        # Each call goes straight to requests' transport adapter: the session's send pipeline
        # (a cookie jar merged and filled per call, hooks, redirect resolution, environment
        # settings) is nothing the client uses and cost ~0.08 ms of CPU a request under the GIL
        # every worker shares. So: no ~/.netrc (it would replace the bearer token), no
        # environment proxies by surprise (a proxy is configured with registry.proxy), no
        # cookies (not part of the API; a jar shared by every org's token must not carry any).
        self._adapter = DeadlineAdapter(pool_maxsize=settings.concurrency, max_retries=0)
        self._headers = requests.utils.default_headers()
        self._headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
        self._proxies = {"http": settings.proxy, "https": settings.proxy} if settings.proxy else {}
        # stop_before_delay: give up when the next sleep would overrun the time budget, rather
        # than sleeping past it and trying once more.
        self._stop = stop_after_attempt(settings.retry.max_attempts) | stop_before_delay(
            settings.retry.max_elapsed_seconds
        )
        self._counts_lock = threading.Lock()
        self.requests_by_status: Counter[str] = Counter()
        self.requests_by_operation: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"RegistryClient(api_root={self.api_root!r}, token=<redacted>)"

    def abort(self) -> None:
        """The run stopped: start no request or retry, and cut the ones in flight now."""
        self._cancelled.set()
        self._deadlines.abandon_all()
        self.memory.abort()

    def close(self) -> None:
        """Close pooled connections and stop the deadline monitor."""
        self._adapter.close()
        self._deadlines.close()

    def blocked(self, org: str) -> OrgStoppedError | None:
        """The answer (401/403, out of credits) that stopped all calls for `org`, if one did."""
        return self._blocked.get(org)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def settings(self) -> RegistrySettings:
        """The registry settings this client was made with."""
        return self._settings

    @property
    def api_root(self) -> str:
        """The API root requests go to (`RegistrySettings.api_root`)."""
        return self._settings.api_root

    def list_model_versions(
        self, org: str, model: str, credential: Credential | None = None
    ) -> FetchResult:
        """GET one model's version list, retrying transient failures; raises a TargetError.
        Its body holds a share of the memory budget (`FetchResult.share`) until released."""
        url = routes.versions_url(self.api_root, org, model)
        return self._call(LIST_MODEL_VERSIONS, url, org, model, credential, budgeted=True)

    def list_models(
        self,
        org: str,
        page: int,
        limit: int,
        credential: Credential | None = None,
        *,
        include_public: bool = False,
    ) -> FetchResult:
        """GET one page of an org's models (discovery); raises a TargetError (model None)."""
        url = routes.models_url(self.api_root, org, page, limit, include_public)
        return self._call(LIST_MODELS, url, org, None, credential, f"* (page {page})")

    def get_model_version(
        self, org: str, model: str, version: str, credential: Credential | None = None
    ) -> FetchResult:
        """GET the summary of one version; raises a TargetError (before any request for a
        version that cannot be one path segment)."""
        url = routes.version_url(self.api_root, org, model, version)
        return self._call(GET_MODEL_VERSION, url, org, model, credential, f"{model} {version!r}")

    def _call(
        self,
        operation: str,
        url: str,
        org: str,
        model: str | None,
        credential: Credential | None,
        label: str | None = None,
        *,
        budgeted: bool = False,
    ) -> FetchResult:
        """One API operation under the run's shared policy: org blocking, rate limit, deadline,
        retries, abort, size cap, memory budget (`budgeted`: version lists, the only large
        bodies; details are fetched while their list holds its share, so they never wait on
        the budget); every attempt is counted by status and by operation."""
        credential = credential or self._default
        request = routes.request_line(url)
        started = time.monotonic()
        attempts = 0

        def attempt() -> tuple[int, bytes, Any, Share | None]:
            nonlocal attempts
            self._before_attempt(_Call(org, model, attempts))  # a skip is not an attempt
            attempts += 1
            self._count_operation(operation)
            call = _Call(org, model, attempts, request)
            return self._attempt(url, credential, call, budgeted)

        def sleep(seconds: float) -> None:
            if self._cancelled.wait(seconds):
                raise SkippedError(
                    "run aborted while waiting to retry", org=org, model=model, attempts=attempts
                )

        retrying = Retrying(
            retry=_RETRYABLE,
            stop=self._stop,
            wait=self._wait,
            sleep=sleep,
            before_sleep=self._before_sleep(operation, org, model, label or model or "*"),
            reraise=True,
        )
        status, body, payload, share = retrying(attempt)
        self._limiter.record_success()
        elapsed = time.monotonic() - started
        return FetchResult(payload, body, status, attempts, len(body), elapsed, share, request)

    def _attempt(
        self, url: str, credential: Credential, call: _Call, budgeted: bool
    ) -> tuple[int, bytes, Any, Share | None]:
        """One attempt; a budgeted body's share is released here unless it is returned."""
        share: list[Share] = []  # filled by _read_body, which may take it before the body
        try:
            status, body, payload = self._attempt_with(
                url, credential, call, share if budgeted else None
            )
        except BaseException:
            for held in share:
                held.release()
            raise
        return status, body, payload, share[0] if share else None

    def _attempt_with(
        self, url: str, credential: Credential, call: _Call, share: list[Share] | None
    ) -> tuple[int, bytes, Any]:
        settings = self._settings
        deadline = self._deadlines.watch(settings.timeout_seconds)
        try:
            with (
                deadline,
                self._adapter.send(
                    # Exactly one credential header besides the client's own. Redirects are
                    # not followed (the adapter never does): the credential must only ever go
                    # to the registry's own origin, and each hop would need its own deadline.
                    requests.Request(
                        "GET", url, headers={**self._headers, **credential.headers()}
                    ).prepare(),
                    stream=True,
                    timeout=(settings.connect_timeout_seconds, settings.timeout_seconds),
                    verify=self._verify,
                    proxies=self._proxies,
                ) as response,
            ):
                status, headers = response.status_code, response.headers
                body = self._read_body(response, deadline, call, share)
                deadline.finish()
        except Exception as exc:
            failure = self._failure(exc, deadline, call, credential)
            if failure is None or failure is exc:
                raise
            raise failure from exc
        if share is not None and not share:  # no Content-Length: its share is taken now
            share.append(self._take_share(len(body), call))
        self._count(str(status))
        if 200 <= status < 300:
            return (
                status,
                body,
                parse_payload(
                    body, headers, status=status, secrets=self._secrets, **call.context()
                ),
            )
        if 300 <= status < 400:
            location = redact(headers.get("Location", "(no Location)"), self._secrets)
            raise target_error(
                ErrorType.REDIRECT_REFUSED,
                f"the registry redirected to {location}; redirects are not followed, so the "
                "token only goes to registry.base_url (set it to the final location)",
                **call.context(),
                status=status,
            )
        error = error_for_status(status, headers, body, secrets=self._secrets, **call.context())
        if status == 401:  # which scheme went out, and that the other one exists
            error = error.evolve(detail=f"{error.detail} ({credential.refused_hint()})")
        if isinstance(error, OrgStoppedError):
            self._blocked.setdefault(call.org, error)
        if status == 429 and isinstance(error, RetryableError):  # not for out of credits
            retry_after = error.retry_after
            pause = (
                self._settings.retry.backoff_base_seconds if retry_after is None else retry_after
            )
            self._limiter.slow_down(min(pause, self._settings.retry.max_retry_after_seconds))
        raise error

    def _failure(
        self, error: Exception, deadline: AttemptDeadline, call: _Call, credential: Credential
    ) -> TargetError | None:
        """The TargetError an attempt's exception stands for (None: a bug, re-raised as is),
        counted under the status it got or `transport_error`."""
        if deadline.abandoned or isinstance(error, BudgetAbortedError):  # cut: the run stopped
            self._count("abandoned")
            return SkippedError("abandoned in flight: the run was stopped", **call.context())
        if isinstance(error, TargetError):  # built with the attempt's context (_read_body)
            # Over max_response_bytes the server did answer; a timeout got no whole answer.
            self._count(str(error.status) if isinstance(error, PayloadError) else "transport_error")
            return error
        if isinstance(error, requests.RequestException | urllib3.exceptions.HTTPError):
            self._count("transport_error")
            if deadline.expired:
                return self._timed_out(call)
            return _transport_error(error, call, self._secrets, credential)
        if deadline.expired:  # e.g. a TLS read racing the deadline's shutdown
            self._count("transport_error")
            return self._timed_out(call)
        if isinstance(error, ValueError):  # e.g. requests parsing a malformed Location
            self._count("transport_error")
            return target_error(
                ErrorType.REQUEST_ERROR,
                redact(f"{type(error).__name__}: {error}", self._secrets),
                **call.context(),
            )
        return None

    def _read_body(
        self,
        response: requests.Response,
        deadline: AttemptDeadline,
        call: _Call,
        share: list[Share] | None,
    ) -> bytes:
        """Read the body under a total deadline and a size cap, one socket read at a time, so a
        server that drips bytes cannot hold a worker past `timeout_seconds`.

        A body of known length takes its `share` of the memory budget first (the attempt's
        clock paused while it waits) and is read into one buffer of that size: no list of
        chunks and no join, which would need the body twice."""
        limit = self._settings.max_response_bytes
        headers = response.headers
        declared = headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit, call, response.status_code)
        # Compressed, the Content-Length is not the size of the body as read (decoded).
        plain = headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity")
        expected = int(declared) if declared.isdigit() and plain else 0
        if share is not None and expected:
            share.append(self._take_share(expected, call, deadline))
        buffer = bytearray(expected)
        size = 0
        while True:
            if time.monotonic() > deadline.deadline:
                raise self._timed_out(call, size, response.status_code)
            chunk = response.raw.read1(_READ_CHUNK, decode_content=True)
            if not chunk:
                break
            end = size + len(chunk)
            if end > limit:
                raise _too_large(end, limit, call, response.status_code)
            buffer[size:end] = chunk  # in place up to the declared length, then it grows
            size = end
            if size == expected:  # all of it (never more): its connection is back in its pool
                break
        del buffer[size:]
        return bytes(buffer)  # one copy of a buffer freed at once (it is mmap-sized)

    def _take_share(
        self, body_bytes: int, call: _Call, deadline: AttemptDeadline | None = None
    ) -> Share:
        """The memory a body of `body_bytes` needs while it is parsed and flattened, at once
        when it is free (nearly always), else after a wait during which the attempt's
        `deadline` is paused (the server is not slow meanwhile)."""
        wanted = body_bytes * MEMORY_PER_BODY_BYTE
        share = self.memory.try_acquire(wanted)
        if share is not None:
            return share
        if self.memory.held + wanted > self.memory.limit:
            log.debug(
                "%s/%s: waiting for %d bytes of the memory budget (%d of %d held)",
                call.org,
                call.model,
                wanted,
                self.memory.held,
                self.memory.limit,
                extra={"event": "memory_wait", "org": call.org, "model": call.model},
            )
        if deadline is None:
            return self.memory.acquire(wanted)
        with self._deadlines.paused(deadline):
            return self.memory.acquire(wanted)

    def _timed_out(
        self, call: _Call, size: int | None = None, status: int | None = None
    ) -> TargetError:
        received = f" ({size} bytes of body received)" if size is not None else ""
        return target_error(
            ErrorType.TIMEOUT,
            f"response not complete within timeout_seconds="
            f"{self._settings.timeout_seconds:g}{received}",
            **call.context(),
            status=status,
        )

    def _before_attempt(self, done: _Call) -> None:
        """After a 401/403 for an org, its other calls (and retries) stop before they start;
        otherwise wait for the rate limiter (or the run's abort). `done.attempt` counts the
        attempts already made."""
        blocker = self._blocked.get(done.org)
        if blocker is not None:
            where = blocker.model or "the model listing"
            why = (
                f"org {done.org!r} is out of credits"
                if blocker.error_type is ErrorType.INSUFFICIENT_CREDITS
                else f"the token for org {done.org!r} was rejected earlier"
            )
            raise SkippedError(
                f"not attempted: {why} (HTTP {blocker.status} on {where})", **done.context()
            )
        if not self._limiter.acquire(self._cancelled):
            raise SkippedError("not attempted: the run was aborted", **done.context())

    def _wait(self, state: RetryCallState) -> float:
        """Full-jitter exponential backoff, or the server's Retry-After (capped) when given."""
        error = state.outcome.exception() if state.outcome else None
        retry = self._settings.retry
        if isinstance(error, TargetError) and error.retry_after is not None:
            return min(error.retry_after, retry.max_retry_after_seconds)
        jitter = wait_random_exponential(
            multiplier=retry.backoff_base_seconds, max=retry.backoff_max_seconds
        )
        return float(jitter(state))

    def _before_sleep(self, operation: str, org: str, model: str | None, label: str) -> Any:
        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "retrying %s %s/%s in %.2fs after attempt %d: %s",
                operation,
                org,
                label,
                wait,
                state.attempt_number,
                error,
                extra={
                    "event": "retry",
                    "operation": operation,
                    "org": org,
                    "model": model,
                    "attempt": state.attempt_number,
                    "status": getattr(error, "status", None),
                    "wait_seconds": round(wait, 3),
                },
            )

        return log_retry

    def _count(self, key: str) -> None:
        with self._counts_lock:
            self.requests_by_status[key] += 1

    def _count_operation(self, operation: str) -> None:
        with self._counts_lock:
            self.requests_by_operation[operation] += 1


def _too_large(size: int, limit: int, call: _Call, status: int) -> PayloadError:
    return PayloadError(
        f"response body of {size} bytes exceeds max_response_bytes={limit}",
        **call.context(),
        status=status,
        error_type=ErrorType.PAYLOAD_TOO_LARGE,
    )


def _transport_error(
    error: requests.RequestException | urllib3.exceptions.HTTPError,
    call: _Call,
    secrets: list[str],
    credential: Credential | None = None,
) -> TargetError:
    """Name requests' and urllib3's exceptions (the body is read through urllib3 directly);
    whether each kind is retried is `errors.is_retryable`'s decision, not this function's."""
    exceptions = requests.exceptions
    if isinstance(error, exceptions.InvalidHeader):
        # Its message quotes the header value, which is the token: never pass it on.
        header = credential.header if credential else "credential"
        return target_error(
            ErrorType.INVALID_TOKEN,
            f"the {header} header is invalid: check the token for stray whitespace or "
            "control characters",
            **call.context(),
        )
    if isinstance(error, exceptions.SSLError | urllib3.exceptions.SSLError):
        kind = ErrorType.TLS_ERROR
    elif isinstance(error, exceptions.ConnectTimeout | urllib3.exceptions.ConnectTimeoutError):
        kind = ErrorType.CONNECT_TIMEOUT
    elif isinstance(error, exceptions.Timeout | urllib3.exceptions.TimeoutError):
        kind = ErrorType.TIMEOUT
    elif isinstance(
        error,
        exceptions.ConnectionError
        | exceptions.ChunkedEncodingError
        | urllib3.exceptions.ProtocolError
        | urllib3.exceptions.NewConnectionError,
    ):
        kind = ErrorType.CONNECTION_ERROR
    else:  # e.g. an invalid URL or schema; redirects are never followed, so never too many
        kind = ErrorType.REQUEST_ERROR
    detail = redact(f"{type(error).__name__}: {error}", secrets)
    return target_error(kind, detail, **call.context())
