"""Classify one HTTP response: a JSON payload, or the typed error it stands for.

Kept free of I/O so every status, body and header quirk is tested without a socket.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from connector.errors import (
    ErrorType,
    PayloadError,
    TargetError,
    status_error_type,
    target_error,
)
from connector.redaction import redact

_SNIPPET_CHARS = 200
_REDACT_BYTES = 64 * 1024  # the snippet comes from the start: this is far past any cut
_TAGS = re.compile(r"<[^>]+>")
_CREDIT = re.compile("credit", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent
    or unparseable, so the caller falls back to its own backoff."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):  # OverflowError: a huge year
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def body_snippet(body: bytes, content_type: str, secrets: Iterable[str] = ()) -> str:
    """A short, single-line, tag-free excerpt of a non-JSON body for an error message.

    Redacted before it is cut: a token cut in half by the truncation would no longer match."""
    text = redact(body[:_REDACT_BYTES].decode("utf-8", errors="replace"), secrets)
    if "html" in content_type.lower() or text.lstrip().startswith("<"):
        text = _TAGS.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    if not text:
        return "empty body"
    return text[:_SNIPPET_CHARS] + ("..." if len(text) > _SNIPPET_CHARS else "")


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    org: str,
    model: str | None,
    attempts: int = 1,
    secrets: Iterable[str] = (),
    request: str | None = None,
) -> TargetError:
    """The exception for a non-2xx response, from the error envelope where there is one; its
    class (retry, fail the target, block the org, abort) is decided by `errors.error_class`.
    The body is not kept: `_rejected/` holds only 2xx bodies that failed validation.

    A 429 whose envelope `detail` mentions credit is the org being out of credits, as the
    registry's own client reads it (InsufficientCreditsError): waiting does not clear it, so
    it is `insufficient_credits`, never retried, rather than `rate_limited`."""
    secrets = list(secrets)
    content_type = headers.get("Content-Type", "")
    envelope: Any = None
    is_json = True
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        is_json = False
    server_type: str | None = None
    server_detail: str | None = None
    errors: list[dict[str, Any]] = []
    if isinstance(envelope, dict) and ("detail" in envelope or "type" in envelope):
        detail = str(envelope.get("detail") or "(no detail)")
        server_detail = detail
        if isinstance(envelope.get("type"), str):
            server_type = envelope["type"]
        if isinstance(envelope.get("errors"), list):
            errors = [e for e in envelope["errors"] if isinstance(e, dict)]
    else:
        kind = content_type.split(";")[0].strip() or "unknown content type"
        what = "error body without the envelope" if is_json else "non-JSON error body"
        detail = f"{what} ({kind}): {body_snippet(body, content_type, secrets)}"
    error_type = status_error_type(status)
    if status == 429 and server_detail is not None and _CREDIT.search(server_detail):
        error_type = ErrorType.INSUFFICIENT_CREDITS
        detail = f"the org is out of credits; calls for it stop until credits are added: {detail}"
    return target_error(
        error_type,
        redact(detail, secrets),
        org=org,
        model=model,
        status=status,
        attempts=attempts,
        request=request,
        server_error_type=server_type,
        errors=[json.loads(redact(json.dumps(e), secrets)) for e in errors],
        retry_after=parse_retry_after(headers.get("Retry-After")),
    )


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259), though Python's parser accepts them."""
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """`1e400` parses as infinity, which JSON cannot carry back out (it would be stored as
    `Infinity`, not JSON): a number out of range is an invalid payload."""
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object with a key twice is ambiguous (Python keeps the last, other parsers the
    first): `{"versions": [...], "versions": []}` must fail, not silently publish 0 rows."""
    document = dict(pairs)
    if len(document) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        duplicate = next(key for key, count in counts.items() if count > 1)
        raise ValueError(f"duplicate key {duplicate!r} in an object")
    return document


def parse_payload(
    body: bytes,
    headers: Mapping[str, str],
    *,
    org: str,
    model: str | None,
    status: int,
    attempts: int = 1,
    secrets: Iterable[str] = (),
    request: str | None = None,
) -> Any:
    """The JSON document of a 2xx response; PayloadError (raw body and the request it
    answered kept) if it is not JSON."""
    try:
        return json.loads(
            body,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        content_type = headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
        if not body.strip():
            detail = "empty body where a JSON document was expected"
        elif "json" not in content_type:
            detail = (
                f"expected JSON, got {content_type}: {body_snippet(body, content_type, secrets)}"
            )
        else:
            detail = f"invalid JSON: {exc}"
        raise PayloadError(
            detail,
            raw=body,
            org=org,
            model=model,
            status=status,
            attempts=attempts,
            request=request,
            error_type=ErrorType.INVALID_JSON,
        ) from exc
