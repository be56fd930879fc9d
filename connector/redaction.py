"""Scrub secrets from any text that leaves the process: logs, summaries, manifests, kept bodies.

Shared by every layer (HTTP errors, rejected payloads, logs), so it depends on nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in `text`; used on anything a server sends back to us."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
