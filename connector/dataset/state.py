"""State the connector reads back from the output is untrusted: every document is validated here.

An earlier run, another version of the connector, another program or a damaged disk may have
written a lock holder, a lease marker, a publish journal, a shard record, a manifest or a run
record. Each is read through one function of this module that bounds its size, parses it,
checks its shape and bounds its values, so that a malformed document is either treated as stale
(where that is safe: a lock's holder, a lease) or refused with an `OutputError` naming the
object and what is wrong with it, never a traceback; and an absurd value (a lease of years, a
pid that cannot exist) is bounded before anything acts on it.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connector.errors import OutputError

# Linux's largest possible pid (PID_MAX_LIMIT on 64-bit); a pid outside 1..this cannot exist,
# and 0 or a negative one would signal a whole process group if passed to kill().
MAX_PID = 4_194_304
DEFAULT_LEASE_SECONDS = 120.0
MAX_LEASE_SECONDS = 3600.0  # a marker asking for more is held to this
_SHORT_TEXT = 256
LEASE_MARKER_BYTES = 4096  # a marker is a few hundred bytes; anything larger is not one
_Model = TypeVar("_Model", bound=BaseModel)


class _Document(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class Holder(_Document):
    """Who holds a lock or lease (the fields a refusal names); every field optional."""

    pid: int | None = Field(None, ge=1, le=MAX_PID)
    host: str | None = Field(None, max_length=_SHORT_TEXT)
    started_at: str | None = Field(None, max_length=_SHORT_TEXT)
    run_id: str | None = Field(None, max_length=_SHORT_TEXT)
    lease_seconds: float | None = Field(None, ge=0)

    def describe(self) -> str:
        """'pid 123 on host h since 2026-11-29T03:00:00+00:00 (run abc)', with what is known."""
        if self.pid is None and self.host is None and self.run_id is None:
            return "holder unknown"
        return (
            f"pid {self.pid or '?'} on host {self.host or '?'} "
            f"since {self.started_at or '?'} (run {self.run_id or '?'})"
        )

    @property
    def lease(self) -> float:
        """The lease length to honour: the marker's own, at most MAX_LEASE_SECONDS."""
        seconds = self.lease_seconds
        if seconds is None or not math.isfinite(seconds):
            return DEFAULT_LEASE_SECONDS
        return min(seconds, MAX_LEASE_SECONDS)


def parse_json(raw: bytes, shown: str) -> Any:
    """A JSON document; OutputError naming `shown` when it is not UTF-8 JSON (or nested too
    deeply to parse)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise OutputError(f"{shown} is not valid JSON: {_first_line(exc)}") from None


def parse_holder(raw: bytes | str | None) -> Holder:
    """The holder a lock file or lease marker names; an unreadable one is `Holder()` (holder
    unknown, default lease), never an error: a lock's holder is only ever informative."""
    if raw is None:
        return Holder()
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return Holder()
    if not isinstance(document, dict):
        return Holder()
    known = {key: document[key] for key in Holder.model_fields if key in document}
    if isinstance(known.get("lease_seconds"), int) and not isinstance(known["lease_seconds"], bool):
        known["lease_seconds"] = float(known["lease_seconds"])
    valid = {}
    for key, value in known.items():  # keep every field that is valid on its own
        try:
            Holder.model_validate({key: value})
        except ValidationError:
            continue
        valid[key] = value
    return Holder.model_validate(valid)


def validated(model: type[_Model], document: Any, shown: str) -> _Model:
    """`document` as `model`; OutputError naming `shown` and the first problems otherwise."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '(top level)'}: {item['msg']}"
            for item in exc.errors(include_url=False, include_input=False)[:3]
        )
        raise OutputError(f"{shown} is not a valid {model.__name__}: {problems}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
