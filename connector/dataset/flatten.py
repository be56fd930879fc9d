"""Flatten one `listModelVersions` body (and `getModelVersion` details) into dataset rows.

Liberal in what it accepts (plain version strings or summary objects, any ISO 8601 timestamp,
fields it does not know), exact in what it records: a field the body omits stays null, counts
stay Python ints (never float64), unknown fields are kept in `extra`, and anything that cannot
be recorded faithfully raises `PayloadError` for that model instead of being guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from connector.dataset.schema import FILE_SCHEMA
from connector.dataset.timestamps import parse_timestamp
from connector.errors import ErrorType, PayloadError

Row = dict[str, Any]
"""One dataset row by column name (`schema.COLUMNS`); a column it leaves out is null.
Timestamps as epoch microseconds. Named, not positional, so that a new column means a
`Column` in schema.py and the line here that fills it, and no tuple order anywhere."""

_TOP_LEVEL_KEYS = frozenset({"name", "latest", "versions"})
VERSION_DETAIL_MODES = ("missing", "all", "off")
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


class _InvalidError(Exception):
    """Raised deep inside the flattening, where org, model and body are not at hand; the
    public entry points turn it into a `PayloadError` built with the whole context."""

    def __init__(self, detail: str, error_type: ErrorType = ErrorType.INVALID_PAYLOAD) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error_type = error_type

    def at(self, where: str) -> _InvalidError:
        """The same problem, located (`versions[3].tags: ...`): locations are written only
        for a value that fails, not for each of the hundreds of thousands that do not."""
        return _InvalidError(f"{where}: {self.detail}", self.error_type)


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


def _unicode(value: str) -> str:
    """JSON can escape a lone surrogate (`"\\ud800"`), which no Parquet string can hold."""
    if not value.isascii() and not _is_utf8(value):  # isascii: a flag lookup, no scan
        raise _InvalidError(f"{value!r} is not valid Unicode (lone surrogate)")
    return value


def _text(value: str, where: str) -> str:
    try:
        return _unicode(value)
    except _InvalidError as exc:
        raise exc.at(where) from None


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# The readers of summary fields: each takes a value that is not null (a null field stays
# null without a call) and returns it as its column holds it, or raises what is wrong with
# it (the caller says where).


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _InvalidError(f"expected a string, got {_type_name(value)}")
    return _unicode(value)


def _count(value: Any, high: int = _INT64_MAX) -> int:
    """A count between 0 and `high` (JSON booleans and floats refused: they are not counts)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _InvalidError(f"expected an integer, got {_type_name(value)} {value!r}")
    if not 0 <= value <= high:
        raise _InvalidError(f"{value} is out of range")
    return value


def _small_count(value: Any) -> int:
    return _count(value, _INT32_MAX)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _InvalidError(f"expected a boolean, got {_type_name(value)}")
    return value


def _timestamp(value: Any) -> int:
    if not isinstance(value, str):
        raise _InvalidError(f"expected a string, got {_type_name(value)}")
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError) as exc:
        raise _InvalidError(str(exc)) from exc


def _strings(value: Any) -> list[str]:
    """A list of strings, kept as parsed (no copy: nothing else holds it)."""
    if not isinstance(value, list):
        raise _InvalidError(f"expected a list of strings, got {value!r:.80}")
    for item in value:
        if not isinstance(item, str):
            raise _InvalidError(f"expected a list of strings, got {value!r:.80}")
        _unicode(item)
    return value


# Every field of a ModelArtifactSummary the schema has a column for: API key -> (column,
# reader). The same table reads `latest`, an object entry of `versions` and a getModelVersion
# body, so no row of a model disagrees with another about where a field lives.
_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "id": ("artifact_id", _string),
    "created_at": ("created_at", _timestamp),
    "download_count": ("download_count", _count),
    "framework": ("framework", _string),
    "is_public": ("is_public", _boolean),
    "origin": ("origin", _json_text),
    "file_size_bytes": ("file_size_bytes", _count),
    **{key: (key, _string) for key in ("pretty_name", "summary", "task", "architecture")},
    **{key: (key, _string) for key in ("base_model", "license", "size_category")},
    **{key: (key, _strings) for key in ("language", "tags", "task_categories", "aliases")},
    "version_count": ("version_count", _small_count),
    "updated_at": ("updated_at", _timestamp),
}
_NAMING_KEYS = frozenset({"name", "version"})  # checked, not recorded per row
# The fields a version listed without them needs getModelVersion for (`missing`).
_SUMMARY_FIELDS = (
    "artifact_id",
    "created_at",
    "download_count",
    "framework",
    "is_public",
    "origin",
)


class _Summary:
    """The known fields of one summary object, validated and keyed by the column each fills,
    plus what the schema does not know. Its `name`, when given, must name the model asked for
    (`names`: the slug or `org/model`): a summary of another model is not this model's data."""

    __slots__ = ("fields", "unknown", "version")

    def __init__(self, entry: dict[str, Any], where: str, names: frozenset[str]) -> None:
        version = entry.get("version")
        if not isinstance(version, str):
            raise _InvalidError(f"{where}.version: expected a string, got {_type_name(version)}")
        name = entry.get("name")
        try:
            self.version = _unicode(version)
        except _InvalidError as exc:
            raise exc.at(f"{where}.version") from None
        if name is not None and (type(name) is not str or name not in names):
            _check_name(name, f"{where}.name", names)  # the message, built for a failure only
        # One pass over what the entry holds (a field it omits, or nulls, stays null).
        self.fields: dict[str, Any] = {}
        self.unknown: dict[str, Any] = {}
        for key, value in entry.items():
            known = _FIELDS.get(key)
            if known is not None:
                if value is not None:
                    column, read = known
                    try:
                        self.fields[column] = read(value)
                    except _InvalidError as exc:
                        raise exc.at(f"{where}.{key}") from None
            elif key not in _NAMING_KEYS:
                self.unknown[key] = value

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


def _check_name(name: Any, where: str, names: frozenset[str]) -> None:
    """A name that is not the model asked for means the body answers another request."""
    if name is None or (isinstance(name, str) and name in names):
        return
    if not isinstance(name, str):
        raise _InvalidError(f"{where}: expected a string, got {_type_name(name)}")
    if name not in names:
        asked = " or ".join(repr(n) for n in sorted(names))
        raise _InvalidError(
            f"{where}: {name[:120]!r} names another model than the one requested ({asked}): "
            "the body is not the answer to this request"
        )


@dataclass
class _Ranked:
    rank: int | None
    version: str
    summary: _Summary | None
    dropped: bool = False


class VersionList:
    """A validated `listModelVersions` body, to which `getModelVersion` details are added.

    In steps so the caller can fetch what the rows lack in between: `needing_detail` says which
    versions to ask for, `add_detail` validates and merges each answer (the detail wins, the
    list entry fills what it lacks), `drop` removes a version deleted since it was listed, and
    `rows` builds the rows. Each step costs the same whatever the number of versions (entries
    are found by version, never searched), so a model of many versions stays linear.
    """

    def __init__(
        self, payload: Any, org: str, model: str, extracted_at: int, body: bytes | None = None
    ) -> None:
        self.org, self.model, self._body = org, model, body
        self._names = frozenset({model, f"{org}/{model}"})
        self._ranked, latest, self._response_extra = _parse(payload, self._names)
        self._by_version = {entry.version: entry for entry in self._ranked}
        self._latest_version = latest.version if latest is not None else None
        self._prefix: Row = {
            "extracted_at": extracted_at,
            "org": org,
            "model": model,
            "model_name": f"{org}/{model}",  # what every name in the body was checked to be
        }

    def needing_detail(self, mode: str) -> list[str]:
        """Versions to fetch, newest first: those with no summary (`missing`), every one
        (`all`), or none."""
        if mode == "off":
            return []
        return [
            e.version
            for e in self._ranked
            if mode == "all" or e.summary is None or not e.summary.known()
        ]

    def add_detail(self, version: str, payload: Any, body: bytes | None = None) -> None:
        """Merge one getModelVersion body; PayloadError (naming org, model and version, `raw`
        the detail's `body`) if it is invalid or answers for another model or version."""
        entry = self._by_version[version]
        try:
            entry.summary = _merge_detail(payload, version, self._names, entry.summary)
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
        self._by_version[version].dropped = True

    def rows(self) -> list[Row]:
        """One row per version; unknown response-level fields go on the first row only."""
        kept = [entry for entry in self._ranked if not entry.dropped]
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
                for index, entry in enumerate(kept)
            ]
        except RecursionError as exc:  # json.loads took it, but re-encoding `extra` went deeper
            raise PayloadError(
                "body nested too deeply to record", org=self.org, model=self.model, raw=self._body
            ) from exc


def _merge_detail(
    payload: Any, version: str, names: frozenset[str], entry: _Summary | None
) -> _Summary:
    where = f"getModelVersion {version!r}"
    if not isinstance(payload, dict):
        raise _InvalidError(f"{where}: body is a JSON {_type_name(payload)}, expected an object")
    detail = _Summary(payload, where, names)
    if detail.version != version:
        raise _InvalidError(
            f"{where}: answered for version {detail.version[:120]!r}: not the answer to this "
            "request"
        )
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


def _parse(
    payload: Any, names: frozenset[str]
) -> tuple[list[_Ranked], _Summary | None, dict[str, Any]]:
    """(entries by rank with `latest` merged in, latest, unknown top-level keys); the list's
    `name` must be one of `names` (the slug or `org/model`, compared exactly)."""
    if not isinstance(payload, dict):
        raise _InvalidError(f"body is a JSON {_type_name(payload)}, expected an object")
    name = payload.get("name")
    if not isinstance(name, str):
        detail = "missing" if name is None else f"a {_type_name(name)}, expected a string"
        raise _InvalidError(f"name: {detail}")
    _check_name(_text(name, "name"), "name", names)
    versions = payload.get("versions")
    if not isinstance(versions, list):
        detail = "missing" if versions is None else f"a {_type_name(versions)}, expected a list"
        raise _InvalidError(f"versions: {detail}")
    latest_raw = payload.get("latest")
    if latest_raw is not None and not isinstance(latest_raw, dict):
        raise _InvalidError(f"latest: a {_type_name(latest_raw)}, expected an object or null")

    entries = _read_entries(versions, names)
    latest = _Summary(latest_raw, "latest", names) if latest_raw is not None else None
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
    return ranked, latest, response_extra


def _read_entries(
    versions: Sequence[Any], names: frozenset[str]
) -> list[tuple[str, _Summary | None]]:
    entries: list[tuple[str, _Summary | None]] = []
    first_seen: dict[str, int] = {}
    for index, entry in enumerate(versions):
        where = f"versions[{index}]"
        if isinstance(entry, str):
            version, summary = _text(entry, where), None
        elif isinstance(entry, dict):
            summary = _Summary(entry, where, names)
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
