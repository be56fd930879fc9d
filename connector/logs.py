"""Logging on stderr as text or JSON lines, with every known secret scrubbed on the way out."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from connector.redaction import printable, redact

# Structured fields callers pass through `extra=`; JSON lines carry them as keys.
FIELDS = ("event", "org", "model", "status", "attempt", "elapsed", "run_id", "wait_seconds")


class RedactingFilter(logging.Filter):
    """Replaces tokens in the final message (defence in depth on top of redaction at source)
    and escapes control characters, so text a server sent cannot forge a log line or drive
    the terminal."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = printable(redact(message, self.secrets) if self.secrets else message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, event, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", None) or record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS[1:]:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class BarSafeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes through `tqdm.write`: an active progress bar on the same
    stream is cleared, the line printed, and the bar redrawn below it, so a log line never
    lands in the middle of the bar. Without a bar it is a plain stream handler.

    The whole formatted text goes through `printable` (its own line breaks kept): the filter
    has escaped the message, but a traceback appended to it quotes exception messages, which
    may hold what a server sent."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(printable(self.format(record), keep_newlines=True), file=self.stream)
        except Exception:  # as StreamHandler does: a broken log stream must not end the run
            self.handleError(record)


_filter = RedactingFilter()


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route the `connector` loggers to stderr in the chosen format (idempotent)."""
    logger = logging.getLogger("connector")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = BarSafeHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    handler.addFilter(_filter)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def add_secrets(secrets: Iterable[str]) -> None:
    """Make the log handlers scrub these values from every message."""
    _filter.secrets.extend(s for s in secrets if s and s not in _filter.secrets)
