"""Fault injection for the simulated registry: the plan, the random draw and the bad answers.

Kept apart from the server so the decision of what to answer stays a pure function of
(plan, target, attempt number): tests and benchmarks then see the same outcomes per target
whatever order the client's threads happen to run in.
"""

from __future__ import annotations

import email.utils
import json
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

JSON = "application/json"
HTML = "text/html; charset=utf-8"

MALFORMED_KINDS: frozenset[str] = frozenset(
    {
        "invalid_json",
        "html_200",
        "empty_body",
        "versions_not_list",
        "count_string",
        "count_negative",
        "bad_timestamp",
        "duplicate_versions",
        "missing_name",
        "oversize",
        "drip",
        "wrong_type",
        "wrong_model",
    }
)

ERROR_TYPES: dict[int, str] = {
    400: "bad_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "method_not_allowed",
    409: "conflict_error",
    422: "validation_error",
    426: "upgrade_required",
    429: "rate_limit_error",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

REASONS: dict[int, str] = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

OVERSIZE_BYTES = 20 * 1024 * 1024
DRIP_BYTES = 2048
DRIP_INTERVAL_SECONDS = 0.2
_CHUNK = 64 * 1024


def _check_key(key: str, what: str) -> None:
    org, sep, model = key.partition("/")
    if not sep or not org or not model or "/" in model:
        raise ValueError(f"{what}: {key!r} is not of the form org/model")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


def check_retry_after(value: str) -> None:
    """Refuse a Retry-After the contract does not allow (seconds or an HTTP date)."""
    if value.isdigit():
        return
    try:
        email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise ValueError(f"retry_after {value!r} is neither seconds nor an HTTP date") from None


@dataclass(frozen=True)
class FaultPlan:
    """What the simulator does wrong, and how often; see the module docstring for determinism."""

    seed: int = 0
    rate_5xx: float = 0.0
    html_5xx_fraction: float = 0.0
    rate_429: float = 0.0
    retry_after: str = "0"
    rate_reset: float = 0.0
    rate_slow: float = 0.0
    slow_seconds: float = 0.0
    not_found: frozenset[str] = frozenset()
    forbidden_orgs: frozenset[str] = frozenset()
    upgrade_required: bool = False
    status_for: Mapping[str, int] = field(default_factory=dict)
    malformed: Mapping[str, str] = field(default_factory=dict)
    redirect: Mapping[str, str] = field(default_factory=dict)
    # getModelVersion of "org/model/version" answers this status (404: deleted since listed).
    detail_status: Mapping[str, int] = field(default_factory=dict)
    # The first N attempts at "org/model" answer 503, later ones succeed: an outage that a
    # retry (of the request, or of a whole orchestrator task) outlasts.
    fail_first: Mapping[str, int] = field(default_factory=dict)
    # listModels of an org answers this status on every page.
    listing_status: Mapping[str, int] = field(default_factory=dict)
    # how listModels pages misbehave: "", "shift", "repeat" or "shuffle" (see catalog)
    listing_quirk: str = ""
    # "org/model/version" reports this download_count, whatever the day: 0 a counter reset,
    # None a count the registry lost (in listings and getModelVersion alike).
    download_counts: Mapping[str, int | None] = field(default_factory=dict)
    # listModels counts this many models in `total` that its pages never list
    listing_hidden: int = 0
    # every call for these orgs answers 429 "Insufficient credits" (waiting does not help)
    out_of_credits_orgs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("rate_5xx", "html_5xx_fraction", "rate_429", "rate_reset", "rate_slow"):
            _check_rate(name, getattr(self, name))
        if self.rate_reset + self.rate_5xx + self.rate_429 + self.rate_slow > 1.0 + 1e-9:
            raise ValueError("rate_reset + rate_5xx + rate_429 + rate_slow must not exceed 1")
        if self.slow_seconds < 0:
            raise ValueError("slow_seconds must not be negative")
        check_retry_after(self.retry_after)
        for key in self.not_found:
            _check_key(key, "not_found")
        for key, status in self.status_for.items():
            _check_key(key, "status_for")
            if not 400 <= status <= 599:
                raise ValueError(f"status_for {key}: {status} is not a 4xx/5xx status")
        for key, kind in self.malformed.items():
            _check_key(key, "malformed")
            if kind not in MALFORMED_KINDS:
                kinds = ", ".join(sorted(MALFORMED_KINDS))
                raise ValueError(f"malformed {key}: unknown kind {kind!r} (one of {kinds})")
        for key, url in self.redirect.items():
            _check_key(key, "redirect")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"redirect {key}: {url!r} is not an absolute http(s) URL")
        for key, status in self.detail_status.items():
            _check_key(key.rpartition("/")[0], "detail_status")
            if not 400 <= status <= 599:
                raise ValueError(f"detail_status {key}: {status} is not a 4xx/5xx status")
        for key, count in self.fail_first.items():
            _check_key(key, "fail_first")
            if count < 0:
                raise ValueError(f"fail_first {key}: {count} must not be negative")
        for org, status in self.listing_status.items():
            if not org or "/" in org:
                raise ValueError(f"listing_status: {org!r} is not an org")
            if not 400 <= status <= 599:
                raise ValueError(f"listing_status {org}: {status} is not a 4xx/5xx status")
        for key, reported in self.download_counts.items():
            _check_key(key.rpartition("/")[0], "download_counts")
            if reported is not None and reported < 0:
                raise ValueError(f"download_counts {key}: {reported} must not be negative")
        if self.listing_quirk not in ("", "shift", "repeat", "shuffle"):
            raise ValueError(
                f"listing_quirk {self.listing_quirk!r} is not one of shift, repeat, shuffle"
            )
        if self.listing_hidden < 0:
            raise ValueError(f"listing_hidden must not be negative, got {self.listing_hidden}")
        # Freeze the containers too, so a plan shared between threads cannot change under them.
        object.__setattr__(self, "not_found", frozenset(self.not_found))
        object.__setattr__(self, "forbidden_orgs", frozenset(self.forbidden_orgs))
        object.__setattr__(self, "out_of_credits_orgs", frozenset(self.out_of_credits_orgs))
        for name in (
            "status_for",
            "malformed",
            "redirect",
            "detail_status",
            "fail_first",
            "listing_status",
            "download_counts",
        ):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


@dataclass(frozen=True)
class Reply:
    """One answer for the handler to write; `stream` produces bodies too big or slow to hold."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    stream: Callable[[], Iterator[bytes]] | None = None
    length: int | None = None
    chunk_delay: float = 0.0
    reset: bool = False
    delay: float = 0.0


def error_reply(
    status: int,
    detail: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    errors: list[dict[str, Any]] | None = None,
) -> Reply:
    """The canonical error envelope every non-2xx answer carries."""
    envelope: dict[str, Any] = {
        "code": status,
        "detail": detail,
        "type": ERROR_TYPES.get(status, "api_error"),
    }
    if errors is not None:
        envelope["errors"] = errors
    return Reply(status, json.dumps(envelope).encode(), headers=headers)


def status_reply(status: int, key: str, retry_after: str) -> Reply:
    """A fixed status for `status_for`, with the extras a real server sends for that status."""
    if status == 422:
        errors = [
            {"loc": ["path", "name"], "msg": f"{key} failed validation", "type": "value_error"}
        ]
        return error_reply(422, "Validation failed", errors=errors)
    headers = (("Retry-After", retry_after),) if status == 429 else ()
    return error_reply(status, f"Simulated HTTP {status} for {key}", headers=headers)


def _html_page(status: int, title: str) -> bytes:
    return (
        f"<html>\r\n<head><title>{status} {title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def draw_fault(plan: FaultPlan, key: str, attempt: int) -> tuple[Reply | None, float]:
    """Decide attempt `attempt` of `key`: (a fault reply or None, seconds to delay a success).

    One uniform draw is compared with cumulative thresholds in the order reset, 5xx, 429, slow,
    so each rate is the fraction of attempts that get that fault.
    """
    if attempt < plan.fail_first.get(key, 0):
        return error_reply(503, "Simulated service unavailable"), 0.0
    rng = random.Random(f"{plan.seed}:{key}:{attempt}")
    draw = rng.random()
    threshold = plan.rate_reset
    if draw < threshold:
        return Reply(0, reset=True), 0.0
    threshold += plan.rate_5xx
    if draw < threshold:
        status = rng.choice((500, 502, 503, 504))
        if rng.random() < plan.html_5xx_fraction:
            return Reply(status, _html_page(status, REASONS[status]), content_type=HTML), 0.0
        return error_reply(status, f"Simulated {REASONS[status].lower()}"), 0.0
    threshold += plan.rate_429
    if draw < threshold:
        headers = (("Retry-After", plan.retry_after),)
        return error_reply(429, "Rate limit exceeded", headers=headers), 0.0
    threshold += plan.rate_slow
    if draw < threshold:
        return None, plan.slow_seconds
    return None, 0.0


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _corrupt_summaries(payload: dict[str, Any], field_name: str, value: Any) -> dict[str, Any]:
    """Put a bad value in `latest` and in every object entry of `versions`, so a client fails
    whichever of the two it reads the field from."""
    bad = dict(payload)
    if isinstance(bad.get("latest"), dict):
        bad["latest"] = {**bad["latest"], field_name: value}
    bad["versions"] = [
        {**entry, field_name: value} if isinstance(entry, dict) else entry
        for entry in bad["versions"]
    ]
    return bad


def with_counts(payload: dict[str, Any], counts: Mapping[str, int | None]) -> dict[str, Any]:
    """A listModelVersions body whose summaries of the versions in `counts` report those
    download counts (`latest` and object entries; a plain-string entry carries none)."""

    def changed(entry: Any) -> Any:
        if isinstance(entry, dict) and entry.get("version") in counts:
            return {**entry, "download_count": counts[entry["version"]]}
        return entry

    return {
        **payload,
        "latest": changed(payload.get("latest")),
        "versions": [changed(entry) for entry in payload["versions"]],
    }


def _oversize_stream(payload: dict[str, Any]) -> tuple[int, Callable[[], Iterator[bytes]]]:
    head = _dump(payload)[:-1] + b',"padding":"'
    tail = b'"}'
    pad = OVERSIZE_BYTES - len(head) - len(tail)
    chunk = b"x" * _CHUNK

    def stream() -> Iterator[bytes]:
        yield head
        left = pad
        while left > 0:
            yield chunk[: min(left, _CHUNK)]
            left -= _CHUNK
        yield tail

    return OVERSIZE_BYTES, stream


def _drip_stream(payload: dict[str, Any]) -> tuple[int, Callable[[], Iterator[bytes]]]:
    body = _dump(payload)
    if len(body) < DRIP_BYTES:
        body = body[:-1] + b',"padding":"' + b"x" * (DRIP_BYTES - len(body) - 13) + b'"}'

    def stream() -> Iterator[bytes]:
        for index in range(len(body)):
            yield body[index : index + 1]

    return len(body), stream


def malformed_reply(kind: str, payload: dict[str, Any]) -> Reply:
    """A 200 whose body breaks the contract in the way `kind` names (see MALFORMED_KINDS).

    The count and timestamp kinds corrupt existing summaries, so on a model without versions
    they leave the body valid; aim them at a model that has versions.
    """
    if kind == "oversize":
        length, stream = _oversize_stream(payload)
        return Reply(200, stream=stream, length=length)
    if kind == "drip":
        length, stream = _drip_stream(payload)
        return Reply(200, stream=stream, length=length, chunk_delay=DRIP_INTERVAL_SECONDS)
    if kind == "html_200":
        return Reply(200, _html_page(200, "Sign in"), content_type=HTML)
    if kind == "empty_body":
        return Reply(200, b"")
    if kind == "invalid_json":
        body = _dump(payload)
        return Reply(200, body[: max(1, len(body) // 2)])
    return Reply(200, _dump(_malformed_payload(kind, payload)))


def _malformed_payload(kind: str, payload: dict[str, Any]) -> Any:
    versions = payload["versions"]
    if kind == "versions_not_list":
        return {**payload, "versions": {str(i): entry for i, entry in enumerate(versions)}}
    if kind == "count_string":
        return _corrupt_summaries(payload, "download_count", "12")
    if kind == "count_negative":
        return _corrupt_summaries(payload, "download_count", -5)
    if kind == "bad_timestamp":
        return _corrupt_summaries(payload, "created_at", "yesterday")
    if kind == "duplicate_versions":
        return {**payload, "versions": versions[:1] + versions}
    if kind == "missing_name":
        return {key: value for key, value in payload.items() if key != "name"}
    if kind == "wrong_type":
        return versions
    if kind == "wrong_model":  # another model's list: the answer to another request
        other = f"{payload['name']}-other"
        renamed = {**payload, "name": other}
        if isinstance(payload.get("latest"), dict):
            renamed["latest"] = {**payload["latest"], "name": other}
        return renamed
    raise ValueError(f"unknown malformed kind {kind!r}")
