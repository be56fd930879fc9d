"""Flatten one `listModelVersions` body (and `getModelVersion` details) into dataset rows.

Liberal in what it accepts (plain version strings or summary objects, any ISO 8601 timestamp,
fields it does not know), exact in what it records: a field the body omits stays null, counts
stay Python ints (never float64), unknown fields are kept in `extra`, and anything that cannot
be recorded faithfully raises `PayloadError` for that model instead of being guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa

from connector.dataset.schema import FILE_SCHEMA
from connector.errors import ErrorType, PayloadError

Row = dict[str, Any]
"""One dataset row by column name (`schema.COLUMNS`); a column it leaves out is null.
Timestamps as epoch microseconds. Named, not positional, so that a new column means a
`Column` in schema.py and the line here that fills it, and no tuple order anywhere."""

_TOP_LEVEL_KEYS = frozenset({"name", "latest", "versions"})
_SUMMARY_KEYS = frozenset(
    {"id", "name", "version", "created_at", "download_count", "framework", "is_public", "origin"}
)
_DETAIL_KEYS = frozenset({"file_size_bytes", "license", "task", "tags"})
_KNOWN_KEYS = _SUMMARY_KEYS | _DETAIL_KEYS
VERSION_DETAIL_MODES = ("missing", "all", "off")
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


class _InvalidError(Exception):
    """Raised deep inside the flattening, where org, model and body are not at hand; the
    public entry points turn it into a `PayloadError` built with the whole context."""

    def __init__(self, detail: str, error_type: ErrorType = ErrorType.INVALID_PAYLOAD) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error_type = error_type


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
        raise _InvalidError(f"{where}: {value!r} is not valid Unicode (lone surrogate)")
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class _Summary:
    """The known fields of one summary object, validated and keyed by the column each fills,
    plus what the schema does not know."""

    __slots__ = ("fields", "unknown", "version")

    def __init__(
        self, entry: dict[str, Any], where: str, model_name: str, detail: bool = False
    ) -> None:
        """`detail`: a getModelVersion body, whose detail fields become columns; in a list
        entry they are not part of the summary, so they stay in `extra` as any unknown field."""
        version = entry.get("version")
        if not isinstance(version, str):
            raise _InvalidError(f"{where}.version: expected a string, got {_type_name(version)}")
        self.version = _text(version, f"{where}.version")
        self.fields: dict[str, Any] = {}
        known = _KNOWN_KEYS if detail else _SUMMARY_KEYS
        self.unknown = {k: v for k, v in entry.items() if k not in known}
        name = entry.get("name")
        if name is not None and name != model_name:
            self.unknown["name"] = name
        self._read(entry, where)
        if detail:
            self._read_detail(entry, where)

    def _read(self, entry: dict[str, Any], where: str) -> None:
        self.fields["artifact_id"] = _string(entry.get("id"), f"{where}.id")
        self.fields["framework"] = _string(entry.get("framework"), f"{where}.framework")
        self.fields["download_count"] = _count(
            entry.get("download_count"), f"{where}.download_count"
        )
        public = entry.get("is_public")
        if public is not None and not isinstance(public, bool):
            raise _InvalidError(f"{where}.is_public: expected a boolean, got {_type_name(public)}")
        self.fields["is_public"] = public
        created = entry.get("created_at")
        if created is not None:
            if not isinstance(created, str):
                raise _InvalidError(
                    f"{where}.created_at: expected a string, got {_type_name(created)}"
                )
            try:
                created = parse_timestamp(created)
            except (ValueError, OverflowError) as exc:
                raise _InvalidError(f"{where}.created_at: {exc}") from exc
        self.fields["created_at"] = created
        origin = entry.get("origin")
        self.fields["origin"] = None if origin is None else _json_text(origin)

    def _read_detail(self, entry: dict[str, Any], where: str) -> None:
        for key in ("license", "task"):
            self.fields[key] = _string(entry.get(key), f"{where}.{key}")
        size = entry.get("file_size_bytes")
        self.fields["file_size_bytes"] = _count(size, f"{where}.file_size_bytes")
        tags = entry.get("tags")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
                raise _InvalidError(f"{where}.tags: expected a list of strings, got {tags!r:.80}")
            tags = [_text(tag, f"{where}.tags") for tag in tags]
        self.fields["tags"] = tags

    def fill_from(self, other: _Summary) -> None:
        """Fill only what this entry lacks: the `versions` entry wins over `latest`."""
        for key, value in other.fields.items():
            if self.fields.get(key) is None:
                self.fields[key] = value
        for key, value in other.unknown.items():
            self.unknown.setdefault(key, value)

    def known(self) -> bool:
        """Whether the summary fields are there (a version string alone carries none)."""
        return any(self.fields.get(key) is not None for key in _SUMMARY_FIELDS)


_SUMMARY_FIELDS = (
    "artifact_id",
    "created_at",
    "download_count",
    "framework",
    "is_public",
    "origin",
)


def _string(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _InvalidError(f"{where}: expected a string, got {_type_name(value)}")
    return value if value is None else _text(value, where)


def _count(value: Any, where: str) -> int | None:
    """A non-negative int64 (JSON booleans and floats refused: they are not counts)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _InvalidError(f"{where}: expected an integer, got {_type_name(value)} {value!r}")
    if not 0 <= value <= _INT64_MAX:
        raise _InvalidError(f"{where}: {value} is out of range")
    return value


@dataclass
class _Ranked:
    rank: int | None
    version: str
    summary: _Summary | None


class VersionList:
    """A validated `listModelVersions` body, to which `getModelVersion` details are added.

    In steps so the caller can fetch what the rows lack in between: `needing_detail` says which
    versions to ask for, `add_detail` validates and merges each answer (the detail wins, the
    list entry fills what it lacks), `drop` removes a version deleted since it was listed, and
    `rows` builds the rows.
    """

    def __init__(
        self, payload: Any, org: str, model: str, extracted_at: int, body: bytes | None = None
    ) -> None:
        self.org, self.model, self._body = org, model, body
        self.name, self._ranked, latest, self._response_extra = _parse(payload)
        self._latest_version = latest.version if latest is not None else None
        self._prefix: Row = {
            "extracted_at": extracted_at,
            "org": org,
            "model": model,
            "model_name": self.name,
        }

    def needing_detail(self, mode: str) -> list[str]:
        """Versions to fetch: those with no summary (`missing`), every one (`all`), or none."""
        if mode == "off":
            return []
        return [
            e.version
            for e in self._ranked
            if mode == "all" or e.summary is None or not e.summary.known()
        ]

    def add_detail(self, version: str, payload: Any, body: bytes | None = None) -> None:
        """Merge one getModelVersion body; PayloadError (naming org, model and version, `raw`
        the detail's `body`) if it is invalid."""
        entry = next(e for e in self._ranked if e.version == version)
        try:
            entry.summary = _merge_detail(payload, version, self.name, entry.summary)
        except _InvalidError as exc:
            raise _payload_error(exc, self.org, self.model, body) from None
        except RecursionError as exc:
            raise PayloadError(
                f"getModelVersion {version!r}: body nested too deeply to record",
                org=self.org,
                model=self.model,
                raw=body,
            ) from exc

    def drop(self, version: str) -> None:
        """Leave out a version that no longer exists (a 404 on its detail)."""
        self._ranked = [e for e in self._ranked if e.version != version]

    def rows(self) -> list[Row]:
        """One row per version; unknown response-level fields go on the first row only."""
        try:
            return [
                _row(
                    self._prefix,
                    entry.rank,
                    entry.version,
                    entry.summary,
                    entry.version == self._latest_version,
                    self._response_extra if index == 0 else {},
                )
                for index, entry in enumerate(self._ranked)
            ]
        except RecursionError as exc:  # json.loads took it, but re-encoding `extra` went deeper
            raise PayloadError(
                "body nested too deeply to record", org=self.org, model=self.model, raw=self._body
            ) from exc


def _merge_detail(payload: Any, version: str, model_name: str, entry: _Summary | None) -> _Summary:
    where = f"getModelVersion {version!r}"
    if not isinstance(payload, dict):
        raise _InvalidError(f"{where}: body is a JSON {_type_name(payload)}, expected an object")
    detail = _Summary(payload, where, model_name, detail=True)
    if detail.version != version:
        raise _InvalidError(f"{where}: answered for version {detail.version!r}")
    if entry is not None:
        detail.fill_from(entry)
    return detail


def flatten(payload: Any, *, org: str, model: str, extracted_at: int) -> list[Row]:
    """Rows for one model's version list, without details; raises PayloadError (org/model set)."""
    return parse_versions(payload, org=org, model=model, extracted_at=extracted_at).rows()


def parse_versions(
    payload: Any, *, org: str, model: str, extracted_at: int, body: bytes | None = None
) -> VersionList:
    """Validate one listModelVersions body; raises PayloadError (naming org and model, `raw`
    the `body` it was parsed from) if invalid."""
    try:
        return VersionList(payload, org, model, extracted_at, body)
    except _InvalidError as exc:
        raise _payload_error(exc, org, model, body) from None
    except RecursionError as exc:  # e.g. `origin` nested too deeply to re-encode
        raise PayloadError(
            "body nested too deeply to record", org=org, model=model, raw=body
        ) from exc


def _payload_error(error: _InvalidError, org: str, model: str, body: bytes | None) -> PayloadError:
    return PayloadError(error.detail, org=org, model=model, error_type=error.error_type, raw=body)


def _parse(payload: Any) -> tuple[str, list[_Ranked], _Summary | None, dict[str, Any]]:
    """(model name, entries by rank with `latest` merged in, latest, unknown top-level keys)."""
    if not isinstance(payload, dict):
        raise _InvalidError(f"body is a JSON {_type_name(payload)}, expected an object")
    name = payload.get("name")
    if not isinstance(name, str):
        detail = "missing" if name is None else f"a {_type_name(name)}, expected a string"
        raise _InvalidError(f"name: {detail}")
    _text(name, "name")
    versions = payload.get("versions")
    if not isinstance(versions, list):
        detail = "missing" if versions is None else f"a {_type_name(versions)}, expected a list"
        raise _InvalidError(f"versions: {detail}")
    latest_raw = payload.get("latest")
    if latest_raw is not None and not isinstance(latest_raw, dict):
        raise _InvalidError(f"latest: a {_type_name(latest_raw)}, expected an object or null")

    entries = _read_entries(versions, name)
    latest = _Summary(latest_raw, "latest", name) if latest_raw is not None else None
    ranked = [_Ranked(rank, version, summary) for rank, (version, summary) in enumerate(entries, 1)]
    if latest is not None:
        position = next((i for i, e in enumerate(entries) if e[0] == latest.version), None)
        if position is None:
            ranked.append(_Ranked(None, latest.version, latest))
        else:
            summary = entries[position][1]
            if summary is None:
                summary = latest
            else:
                summary.fill_from(latest)
            ranked[position] = _Ranked(position + 1, latest.version, summary)
    response_extra = {k: v for k, v in payload.items() if k not in _TOP_LEVEL_KEYS}
    return name, ranked, latest, response_extra


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
            raise _InvalidError(f"{where}: a {_type_name(entry)}, expected a string or an object")
        if version in first_seen:
            raise _InvalidError(
                f"duplicate version {version!r} at versions[{first_seen[version]}] and {where}",
                error_type=ErrorType.DUPLICATE_VERSION,
            )
        first_seen[version] = index
        entries.append((version, summary))
    return entries


def _row(
    prefix: Row,
    rank: int | None,
    version: str,
    summary: _Summary | None,
    is_latest: bool,
    response_extra: dict[str, Any],
) -> Row:
    """`prefix` holds the columns every row of a model shares; the summary's fields are keyed
    by their columns already, so a new field read in `_Summary` reaches its column as it is."""
    row = {**prefix, "version": version, "version_rank": rank, "is_latest": is_latest}
    extra: dict[str, Any] = {}
    if summary is not None:
        row.update(summary.fields)
        extra.update(summary.unknown)
    if response_extra:
        extra["_response"] = response_extra
    if extra:
        row["extra"] = _json_text(extra)
    return row


def rows_to_table(rows: Sequence[Row], schema: pa.Schema = FILE_SCHEMA) -> pa.Table:
    """An Arrow table under `schema` (the file schema, from `schema.COLUMNS`): its columns, in
    its order, a column a row leaves out null. Arrow reads the dicts itself (one conversion to
    a struct of the schema's fields, in C++): a Python loop per column would cost several times
    what the positional tuples did."""
    struct = pa.array(rows, type=pa.struct(list(schema)))
    return pa.Table.from_arrays(struct.flatten(), schema=schema)
