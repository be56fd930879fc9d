"""Flatten one `listModelVersions` body into rows of the dataset schema.

Liberal in what it accepts (plain version strings or summary objects, any ISO 8601 timestamp,
fields it does not know), exact in what it records: a field the body omits stays null, counts
stay Python ints (never float64), unknown fields are kept in `extra`, and anything that cannot
be recorded faithfully raises `PayloadError` for that model instead of being guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa

from connector.dataset.schema import FILE_SCHEMA
from connector.errors import PayloadError

Row = tuple[Any, ...]
"""One dataset row, values in `schema.COLUMNS` order; timestamps as epoch microseconds."""

_TOP_LEVEL_KEYS = frozenset({"name", "latest", "versions"})
_SUMMARY_KEYS = frozenset(
    {"id", "name", "version", "created_at", "download_count", "framework", "is_public", "origin"}
)
_INT64_MAX = 2**63 - 1
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


# Built once: json.dumps with non-default options constructs an encoder on every call.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_ENCODE_ASCII = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _json_text(value: Any) -> str:
    text = _ENCODE(value)
    if not text.isascii() and not _is_utf8(text):  # a lone surrogate: keep it as an escape
        text = _ENCODE_ASCII(value)
    return text


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: str, where: str) -> str:
    """JSON can escape a lone surrogate (`"\\ud800"`), which no Parquet string can hold."""
    if not value.isascii() and not _is_utf8(value):  # isascii: a flag lookup, no scan
        raise PayloadError(f"{where}: {value!r} is not valid Unicode (lone surrogate)")
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Summary:
    """The known fields of one summary object, validated, plus what the schema does not know."""

    __slots__ = ("fields", "unknown", "version")

    def __init__(self, entry: dict[str, Any], where: str, model_name: str) -> None:
        version = entry.get("version")
        if not isinstance(version, str):
            raise PayloadError(f"{where}.version: expected a string, got {_type_name(version)}")
        self.version = _text(version, f"{where}.version")
        self.fields: dict[str, Any] = {}
        self.unknown = {k: v for k, v in entry.items() if k not in _SUMMARY_KEYS}
        name = entry.get("name")
        if name is not None and name != model_name:
            self.unknown["name"] = name
        self._read(entry, where)

    def _read(self, entry: dict[str, Any], where: str) -> None:
        for key in ("id", "framework"):
            value = entry.get(key)
            if value is not None and not isinstance(value, str):
                raise PayloadError(f"{where}.{key}: expected a string, got {_type_name(value)}")
            self.fields[key] = value if value is None else _text(value, f"{where}.{key}")
        count = entry.get("download_count")
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int):
                raise PayloadError(
                    f"{where}.download_count: expected an integer, got {_type_name(count)} "
                    f"{count!r}"
                )
            if not 0 <= count <= _INT64_MAX:
                raise PayloadError(f"{where}.download_count: {count} is out of range")
        self.fields["download_count"] = count
        public = entry.get("is_public")
        if public is not None and not isinstance(public, bool):
            raise PayloadError(f"{where}.is_public: expected a boolean, got {_type_name(public)}")
        self.fields["is_public"] = public
        created = entry.get("created_at")
        if created is not None:
            if not isinstance(created, str):
                raise PayloadError(
                    f"{where}.created_at: expected a string, got {_type_name(created)}"
                )
            try:
                created = parse_timestamp(created)
            except (ValueError, OverflowError) as exc:
                raise PayloadError(f"{where}.created_at: {exc}") from exc
        self.fields["created_at"] = created
        origin = entry.get("origin")
        self.fields["origin"] = None if origin is None else _json_text(origin)

    def fill_from(self, other: _Summary) -> None:
        """Fill only what this entry lacks: the `versions` entry wins over `latest`."""
        for key, value in other.fields.items():
            if self.fields.get(key) is None:
                self.fields[key] = value
        for key, value in other.unknown.items():
            self.unknown.setdefault(key, value)


def flatten(payload: Any, *, org: str, model: str, extracted_at: int) -> list[Row]:
    """Rows for one model's version list; raises PayloadError (with org/model set) if invalid."""
    try:
        return _flatten(payload, org, model, extracted_at)
    except PayloadError as exc:
        exc.org, exc.model = org, model
        raise
    except RecursionError as exc:  # json.loads took it, but re-encoding `extra` went deeper
        raise PayloadError("body nested too deeply to record", org=org, model=model) from exc


def _flatten(payload: Any, org: str, model: str, extracted_at: int) -> list[Row]:
    if not isinstance(payload, dict):
        raise PayloadError(f"body is a JSON {_type_name(payload)}, expected an object")
    name = payload.get("name")
    if not isinstance(name, str):
        detail = "missing" if name is None else f"a {_type_name(name)}, expected a string"
        raise PayloadError(f"name: {detail}")
    _text(name, "name")
    versions = payload.get("versions")
    if not isinstance(versions, list):
        detail = "missing" if versions is None else f"a {_type_name(versions)}, expected a list"
        raise PayloadError(f"versions: {detail}")
    latest_raw = payload.get("latest")
    if latest_raw is not None and not isinstance(latest_raw, dict):
        raise PayloadError(f"latest: a {_type_name(latest_raw)}, expected an object or null")

    entries = _read_entries(versions, name)
    latest = _Summary(latest_raw, "latest", name) if latest_raw is not None else None
    ranked: list[tuple[int | None, str, _Summary | None]] = [
        (rank, version, summary) for rank, (version, summary) in enumerate(entries, start=1)
    ]
    if latest is not None:
        position = next((i for i, e in enumerate(entries) if e[0] == latest.version), None)
        if position is None:
            ranked.append((None, latest.version, latest))
        else:
            summary = entries[position][1]
            if summary is None:
                summary = latest
            else:
                summary.fill_from(latest)
            ranked[position] = (position + 1, latest.version, summary)

    response_extra = {k: v for k, v in payload.items() if k not in _TOP_LEVEL_KEYS}
    latest_version = latest.version if latest is not None else None
    prefix = (extracted_at, org, model, name)
    # Unknown response-level fields are kept once, on the model's first row, not copied to all.
    return [
        _row(
            prefix,
            rank,
            version,
            summary,
            version == latest_version,
            response_extra if i == 0 else {},
        )
        for i, (rank, version, summary) in enumerate(ranked)
    ]


def _read_entries(versions: Sequence[Any], model_name: str) -> list[tuple[str, _Summary | None]]:
    entries: list[tuple[str, _Summary | None]] = []
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(versions):
        where = f"versions[{index}]"
        if isinstance(entry, str):
            version, summary = _text(entry, where), None
        elif isinstance(entry, dict):
            summary = _Summary(entry, where, model_name)
            version = summary.version
        else:
            raise PayloadError(f"{where}: a {_type_name(entry)}, expected a string or an object")
        if version in first_seen:
            raise PayloadError(
                f"duplicate version {version!r} at versions[{first_seen[version]}] and {where}",
                error_type="duplicate_version",
            )
        first_seen[version] = index
        entries.append((version, summary))
    return entries


def _row(
    prefix: tuple[int, str, str, str],
    rank: int | None,
    version: str,
    summary: _Summary | None,
    is_latest: bool,
    response_extra: dict[str, Any],
) -> Row:
    """`prefix` is (extracted_at, org, model, model_name), the same for every row of a model."""
    fields = summary.fields if summary is not None else {}
    extra: dict[str, Any] = dict(summary.unknown) if summary is not None else {}
    if response_extra:
        extra["_response"] = response_extra
    return (
        *prefix,
        version,
        rank,
        is_latest,
        fields.get("id"),
        fields.get("created_at"),
        fields.get("download_count"),
        fields.get("framework"),
        fields.get("is_public"),
        fields.get("origin"),
        _json_text(extra) if extra else None,
    )


def rows_to_table(rows: Iterable[Row]) -> pa.Table:
    """Build an Arrow table under FILE_SCHEMA from rows (column-wise, one conversion per column)."""
    columns = list(zip(*rows, strict=True)) or [() for _ in FILE_SCHEMA]
    arrays = [
        pa.array(column, type=field.type)
        for column, field in zip(columns, FILE_SCHEMA, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=FILE_SCHEMA)
