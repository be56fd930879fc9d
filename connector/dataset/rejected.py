"""Keep the bodies that failed validation, outside the dataset, so a person can see what came.

One JSON file per rejected target: `<output>/_rejected/<date>/<org>/<model>.json`, holding the
error and the first `MAX_BODY_BYTES` of the body (tokens scrubbed). Readers of the dataset never
see these: they live outside `model_versions/`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from connector.dataset.layout import REJECTED_DIR, make_dirs
from connector.dataset.writer import write_json_atomic
from connector.errors import TargetFailure
from connector.redaction import redact

MAX_BODY_BYTES = 64 * 1024


def rejected_path(root: Path, day: date, org: str, model: str) -> Path:
    """Where the rejected payload of one target goes (org and model are validated slugs)."""
    return root / REJECTED_DIR / day.isoformat() / org / f"{model}.json"


def save_rejected(
    root: Path, day: date, failure: TargetFailure, raw: bytes, secrets: list[str]
) -> Path:
    """Write the failure record and the (truncated, redacted) body; returns the file's path."""
    path = rejected_path(root, day, failure.org or "_unknown", failure.model or "_unknown")
    make_dirs(root, REJECTED_DIR, day.isoformat(), failure.org or "_unknown")
    # Redact the whole body first: a token cut in half by the truncation would not match.
    body = redact(raw.decode("utf-8", errors="replace"), secrets)
    kept = body.encode("utf-8")[:MAX_BODY_BYTES].decode("utf-8", errors="ignore")
    write_json_atomic(
        path,
        {
            **failure.to_dict(),
            "detail": redact(failure.detail, secrets),  # redacted already; kept as a safeguard
            "body_bytes": len(raw),
            "body_truncated": len(raw) > MAX_BODY_BYTES,
            "body": kept,
        },
    )
    return path
