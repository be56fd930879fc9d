"""2xx bodies that failed validation are kept outside the dataset, redacted, then truncated."""

from __future__ import annotations

import json

from stores import DAY

from connector.dataset.rejected import MAX_BODY_BYTES, save_rejected
from connector.dataset.store import Store
from connector.errors import PayloadError


def test_a_rejected_body_is_truncated_redacted_and_outside_the_dataset(store: Store) -> None:
    secret = "s3cr3t-token"
    raw = b'{"name": "' + secret.encode() + b'", "pad": "' + b"x" * (2 * MAX_BODY_BYTES) + b'"}'
    error = PayloadError(f"bad body mentioning {secret}", org="acme", model="m", status=200)
    where = save_rejected(store, DAY, error.failure(), raw, [secret])
    assert where == store.display("_rejected/2026-03-01/acme/m.json")
    text = (store.get("_rejected/2026-03-01/acme/m.json") or b"").decode()
    kept = json.loads(text)
    assert kept["body_truncated"] is True and kept["body_bytes"] == len(raw)
    assert len(kept["body"].encode()) <= MAX_BODY_BYTES
    assert secret not in text
    assert kept["detail"] == "bad body mentioning [REDACTED]"


def test_a_rejected_body_is_redacted_before_it_is_truncated(store: Store) -> None:
    secret = "tok-straddling-the-cut"
    raw = b"x" * (MAX_BODY_BYTES - 5) + secret.encode() + b"y" * 100
    error = PayloadError("bad", org="acme", model="m", status=200)
    save_rejected(store, DAY, error.failure(), raw, [secret])
    kept = json.loads(store.get("_rejected/2026-03-01/acme/m.json") or b"")
    assert secret[:5] not in kept["body"][-20:]
    assert kept["body"].startswith("x" * 100)
