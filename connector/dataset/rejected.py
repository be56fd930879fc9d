"""Keep the 2xx bodies that failed validation, outside the dataset, so a person can see what
came. An error answer (400, 404, ...) is not kept: its failure record has the status, the
error type, the server's type and detail.

One JSON file per rejected target: `<output>/_rejected/<date>/<org>/<model>.json`, holding the
error, the request the body answered (method and path: a body that names another model is
judged against what was asked) and the first `MAX_BODY_BYTES` of the body (tokens scrubbed).
Readers of the dataset never see these: they live outside `model_versions/`. Each is one atomic
put on the store.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from connector.dataset.datafile import encode
from connector.dataset.layout import REJECTED_DIR
from connector.dataset.store import Store
from connector.errors import TargetFailure
from connector.redaction import redact

MAX_BODY_BYTES = 64 * 1024


def rejected_path(day: date, org: str, model: str) -> str:
    """Where the rejected payload of one target goes (org and model are validated slugs)."""
    return f"{REJECTED_DIR}/{day.isoformat()}/{org}/{model}.json"


def rejected_dir(day: date) -> str:
    """The rejected payloads of one date."""
    return f"{REJECTED_DIR}/{day.isoformat()}"


def save_rejected(
    store: Store,
    day: date,
    failure: TargetFailure,
    raw: bytes,
    secrets: list[str],
    request: str | None = None,
) -> str:
    """Write the failure record and the (truncated, redacted) body; returns where it went."""
    # Redact the whole body first: a token cut in half by the truncation would not match.
    body = redact(raw.decode("utf-8", errors="replace"), secrets)
    kept = body.encode("utf-8")[:MAX_BODY_BYTES].decode("utf-8", errors="ignore")
    document: dict[str, Any] = {
        **failure.to_dict(),
        "detail": redact(failure.detail, secrets),  # redacted already; kept as a safeguard
        "request": None if request is None else redact(request, secrets),
        "body_bytes": len(raw),
        "body_truncated": len(raw) > MAX_BODY_BYTES,
        "body": kept,
    }
    path = rejected_path(day, failure.org or "_unknown", failure.model or "_unknown")
    store.put(path, encode(document))
    return store.display(path)
