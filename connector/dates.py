"""Days as the library API takes them: a `datetime.date` or an ISO string (`YYYY-MM-DD`).

Orchestrators pass dates as text (Airflow's `ds` is "2026-01-06"), people pass `date` objects;
every public function that takes a day accepts both through `as_day`, and anything else is a
`ConfigError` naming the argument, never a bare `TypeError` deep inside a run.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from connector.errors import ConfigError

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def as_day(value: date | str, name: str = "date") -> date:
    """`value` as a `date`; ConfigError (exit code 2) naming `name` when it is not a day."""
    if isinstance(value, datetime):  # a datetime is a date subclass: its time would be lost
        raise ConfigError([f"{name}: expected a date or YYYY-MM-DD, got a datetime ({value})"])
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DAY.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError([f"{name}: {value!r} is not a day of the calendar"]) from None
    shown = repr(value) if isinstance(value, str) else type(value).__name__
    raise ConfigError([f"{name}: expected a date or YYYY-MM-DD, got {shown[:60]}"])


def as_optional_day(value: date | str | None, name: str = "date") -> date | None:
    """`as_day` for an argument that may be left out."""
    return None if value is None else as_day(value, name)
