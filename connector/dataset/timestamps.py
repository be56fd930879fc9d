"""ISO 8601 text to exact UTC epoch microseconds, the dataset's timestamps.

Liberal in the forms it takes (any offset, any fraction, RFC 3339's `t` and `z`, ordinal dates,
the leap second and end of day that `datetime.fromisoformat` rejects), exact in the value, and
refusing what a reader could not hold (outside the years 0001-9999 once in UTC).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_MIN_MICROS = (datetime.min - _EPOCH) // _MICROSECOND
_MAX_MICROS = (datetime.max - _EPOCH) // _MICROSECOND
# fromisoformat rejects ISO 8601's leap second (:60) and end-of-day (24:00); both are valid.
_SPECIAL_TIME = re.compile(
    r"^(?P<date>[0-9-]+[T ])(?P<h>\d\d):?(?P<m>\d\d)(?::?(?P<s>\d\d))?(?P<rest>.*)$"
)
_ORDINAL_DATE = re.compile(r"^(\d{4})-?(\d{3})(?=[T ]|$)")
_MAX_TIMESTAMP_CHARS = 64


def parse_timestamp(text: str) -> int:
    """ISO 8601 text (any offset, any fraction) to UTC epoch microseconds; no offset means UTC."""
    if len(text) > _MAX_TIMESTAMP_CHARS:
        raise ValueError(f"not an ISO 8601 timestamp: {text[:40]!r}... is too long")
    original, leap, carry = text, False, timedelta(0)
    try:  # the common case first: fromisoformat is C and takes most forms as they come
        parsed = datetime.fromisoformat(text)
    except ValueError:
        # RFC 3339 allows 't' and 'z'; ISO 8601 allows ordinal dates (2026-275).
        text = _ORDINAL_DATE.sub(_calendar_date, text.strip().upper())
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed, carry, leap = _parse_special_time(text)
            except ValueError:
                raise ValueError(f"not an ISO 8601 timestamp: {original!r}") from None
    offset = parsed.utcoffset() or timedelta(0)
    naive = parsed.replace(tzinfo=None)
    # Arithmetic on naive values so years near 1 or 9999 with an offset do not overflow.
    micros = ((naive - _EPOCH) - offset + carry) // _MICROSECOND
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        # Parquet could hold it, but pandas, pyarrow's to_pylist and most readers could not.
        raise ValueError(f"{original!r} is outside the years 0001-9999 once converted to UTC")
    if leap and (micros // 1_000_000 - 1) % 86_400 != 86_399:
        raise ValueError(f"{original!r}: a leap second only exists at 23:59:60 UTC")
    return micros


def _calendar_date(match: re.Match[str]) -> str:
    year, day_of_year = int(match[1]), int(match[2])
    first = date(year, 1, 1)
    if not 1 <= day_of_year <= (date(year, 12, 31) - first).days + 1:
        raise ValueError(f"day {day_of_year} does not exist in {year}")
    return (first + timedelta(days=day_of_year - 1)).isoformat()


def _parse_special_time(text: str) -> tuple[datetime, timedelta, bool]:
    """Leap seconds (:60) and end of day (24:00), which fromisoformat rejects.
    Returns the parsed value, what to add to it, and whether it was a leap second."""
    match = _SPECIAL_TIME.match(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"] or 0)
    if second == 60:  # 23:59:60 in UTC, so 05:29:60 at +05:30: checked once in UTC
        patched = f"{match['date']}{hour:02d}:{minute:02d}:59{match['rest']}"
        return datetime.fromisoformat(patched), timedelta(seconds=1), True
    if hour == 24 and minute == 0 and second == 0 and not re.match(r"^[.,]0*[1-9]", match["rest"]):
        rest = re.sub(r"^[.,]\d+", "", match["rest"])
        patched = f"{match['date']}23:59:59{rest}"
        return datetime.fromisoformat(patched), timedelta(seconds=1), False
    raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
