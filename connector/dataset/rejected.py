"""Keep the 2xx bodies that failed validation, outside the dataset, so a person can see what
came. An error answer (400, 404, ...) is not kept: its failure record has the status, the
error type, the server's type and detail.

One JSON file per rejected target: `<output>/_rejected/<date>/<org>/<model>.json`, holding the
error, the request the body answered (method and path: a body that names another model is
judged against what was asked) and the first `MAX_BODY_BYTES` of the body (tokens scrubbed).
Readers of the dataset never see these: they live outside `model_versions/`. On object storage
each is one PUT (an object appears whole or not at all).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from connector.dataset.layout import REJECTED_DIR, make_dirs
from connector.dataset.storage import Location, local_location, put_bytes
from connector.dataset.writer import write_json_atomic
from connector.errors import TargetFailure
from connector.redaction import redact

MAX_BODY_BYTES = 64 * 1024


def rejected_path(root: Path, day: date, org: str, model: str) -> Path:
    """Where the rejected payload of one target goes (org and model are validated slugs)."""
    return root / REJECTED_DIR / day.isoformat() / org / f"{model}.json"


def save_rejected(
    root: Path | Location,
    day: date,
    failure: TargetFailure,
    raw: bytes,
    secrets: list[str],
    request: str | None = None,
) -> Path | str:
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
    org, model = failure.org or "_unknown", failure.model or "_unknown"
    location = local_location(root) if isinstance(root, Path) else root
    if location.is_local:
        path = rejected_path(location.local_path, day, org, model)
        make_dirs(location.local_path, REJECTED_DIR, day.isoformat(), org)
        write_json_atomic(path, document)
        return path
    key = location.join(REJECTED_DIR, day.isoformat(), org, f"{model}.json")
    text = json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
    put_bytes(location.filesystem, key, text.encode("utf-8"))
    return location.display(key)
