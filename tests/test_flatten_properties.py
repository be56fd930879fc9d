"""Property: whatever JSON the registry sends, `flatten` returns rows that fit the file schema,
or raises PayloadError for that model; never any other exception."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from typing import Any

from helpers import table_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.dataset.flatten import flatten, rows_to_table
from connector.dataset.schema import FILE_SCHEMA
from connector.errors import PayloadError

EXTRACTED_AT = 1_792_000_000_000_000
INT64_MAX = 2**63 - 1

# Lone surrogates are valid JSON escapes ("\ud800") that json.loads turns into str.
surrogates = st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800"])
weird_text = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
    surrogates,
    st.sampled_from(["", " ", "null", "1.0.0", "NaN", "\x00", "🙂", "a/b"]),
)
big_ints = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**53, 2**53 + 1, INT64_MAX, INT64_MAX + 1, -(2**63)]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    big_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    weird_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(weird_text, inner, max_size=4),
    max_leaves=12,
)

offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
iso_timestamps = st.one_of(
    st.datetimes(timezones=st.none() | offsets).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(sep=" ", timespec="seconds") + "Z"),
    st.from_regex(
        r"\A\d{4}-\d{2}-\d{2}[T ]\d{2}:?\d{2}(:?\d{2}([.,]\d{1,12})?)?(Z|[+-]\d{2}(:?\d{2})?)?\Z"
    ),
    weird_text,
)
plain_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=10)
versions_text = st.one_of(st.sampled_from(["1.0.0", "2.0.0", "1.0", "v1", ""]), plain_text)
valid_timestamps = st.datetimes(timezones=st.none() | offsets).map(lambda d: d.isoformat())
valid_names = st.sampled_from(["acme/model", "model"])  # the names that mean the model asked for
string_lists = st.none() | st.lists(plain_text, max_size=3)
RICH_STRINGS = ("pretty_name", "summary", "task", "architecture", "base_model", "license")
RICH_LISTS = ("language", "tags", "task_categories", "aliases")

# Every field well-typed: these must always flatten.
valid_fields: dict[str, st.SearchStrategy[Any]] = {
    "id": st.none() | st.uuids().map(str) | plain_text,
    "name": st.none() | valid_names,
    "created_at": st.none() | valid_timestamps,
    "download_count": st.none() | st.integers(min_value=0, max_value=INT64_MAX),
    "framework": st.none() | st.sampled_from(["safetensors", "pytorch"]) | plain_text,
    "is_public": st.none() | st.booleans(),
    "origin": json_values,
    "file_size_bytes": st.none() | st.integers(min_value=0, max_value=INT64_MAX),
    **{key: st.none() | plain_text for key in (*RICH_STRINGS, "size_category")},
    **{key: string_lists for key in RICH_LISTS},
    "version_count": st.none() | st.integers(min_value=0, max_value=2**31 - 1),
    "updated_at": st.none() | valid_timestamps,
    "sha256": json_values,  # a field the schema does not know: kept in `extra`
}
valid_summaries = st.fixed_dictionaries({"version": versions_text}, optional=valid_fields)
# Any field may hold anything, the version included.
garbage_fields: dict[str, st.SearchStrategy[Any]] = {
    "version": st.one_of(versions_text, json_scalars),
    "id": st.one_of(st.uuids().map(str), json_scalars),
    "name": st.one_of(st.just("acme/model"), json_scalars),
    "created_at": st.one_of(iso_timestamps, json_scalars),
    "download_count": st.one_of(big_ints, json_scalars),
    "framework": st.one_of(st.sampled_from(["safetensors", "pytorch"]), json_scalars),
    "is_public": json_scalars,
    "origin": json_values,
    "_response": json_values,
    "tags": json_values,
    "version_count": st.one_of(big_ints, json_scalars),
    "updated_at": st.one_of(iso_timestamps, json_scalars),
    "license": json_scalars,
}
any_summaries = st.fixed_dictionaries(
    {"version": versions_text}, optional={k: v for k, v in garbage_fields.items() if k != "version"}
) | st.fixed_dictionaries({}, optional=garbage_fields)

valid_payloads = st.fixed_dictionaries(
    {
        "name": valid_names,
        "versions": st.lists(
            versions_text | valid_summaries,
            unique_by=lambda e: e if isinstance(e, str) else e["version"],
            max_size=6,
        ),
    },
    optional={"latest": st.none() | valid_summaries, "total": json_values},
)
shaped_payloads = st.fixed_dictionaries(
    {
        "name": st.one_of(valid_names, weird_text),
        "versions": st.lists(st.one_of(versions_text, any_summaries, json_values), max_size=6),
    },
    optional={
        "latest": st.none() | any_summaries | json_scalars,
        "total": json_values,
        "links": json_values,
    },
)


def _repeat_first_version(payload: dict[str, Any]) -> dict[str, Any]:
    versions: list[Any] = payload["versions"]
    return {**payload, "versions": versions + versions[:1]}


payloads = st.one_of(
    valid_payloads,
    valid_payloads,
    shaped_payloads,
    shaped_payloads.map(_repeat_first_version),
    st.dictionaries(
        st.sampled_from(["name", "versions", "latest", "extra"]), json_values, max_size=4
    ),
    json_values,
)

OPTIONAL_TYPES: dict[str, type] = {
    "artifact_id": str,
    "created_at": int,
    "download_count": int,
    "framework": str,
    "is_public": bool,
    "origin": str,
    "extra": str,
    "file_size_bytes": int,
    **dict.fromkeys((*RICH_STRINGS, "size_category"), str),
    **dict.fromkeys(RICH_LISTS, list),
    "version_count": int,
    "updated_at": int,
}


def _expected_versions(payload: dict[str, Any]) -> list[str]:
    versions = [e if isinstance(e, str) else e["version"] for e in payload["versions"]]
    latest = payload.get("latest")
    if latest is not None and latest["version"] not in versions:
        versions.append(latest["version"])
    return versions


def _check_row(row: dict[str, Any]) -> None:
    values = table_rows([row])[0]  # fails on a key that is no column
    assert values["extracted_at"] == EXTRACTED_AT
    assert (values["org"], values["model"]) == ("acme", "model")
    assert values["model_name"] == "acme/model"
    assert isinstance(values["version"], str)
    assert type(values["is_latest"]) is bool
    rank = values["version_rank"]
    assert rank is None or (type(rank) is int and rank >= 1)
    for name, kind in OPTIONAL_TYPES.items():
        assert values[name] is None or type(values[name]) is kind, name
    count = values["download_count"]
    assert count is None or 0 <= count <= INT64_MAX
    if values["extra"] is not None:
        assert isinstance(json.loads(values["extra"]), dict)
    if values["origin"] is not None:
        json.loads(values["origin"])


def _check_rows(payload: Any, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        _check_row(row)
    table = rows_to_table(rows)
    assert table.schema.equals(FILE_SCHEMA, check_metadata=True)
    assert table.num_rows == len(rows)

    assert isinstance(payload, dict)
    assert [row["version"] for row in rows] == _expected_versions(payload)
    ranks = [row["version_rank"] for row in rows if row["version_rank"] is not None]
    assert ranks == list(range(1, len(payload["versions"]) + 1))
    latest_rows = [row["version"] for row in rows if row["is_latest"]]
    latest = payload.get("latest")
    assert latest_rows == ([] if latest is None else [latest["version"]])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads)
def test_flatten_returns_schema_rows_or_raises_payload_error(payload: Any) -> None:
    try:
        rows = flatten(payload, org="acme", model="model", extracted_at=EXTRACTED_AT)
    except PayloadError as error:
        assert (error.org, error.model) == ("acme", "model")
        assert error.detail
        return
    _check_rows(payload, rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=valid_payloads)
def test_well_typed_payloads_always_flatten_exactly(payload: dict[str, Any]) -> None:
    rows = flatten(payload, org="acme", model="model", extracted_at=EXTRACTED_AT)
    _check_rows(payload, rows)
    by_version = {e["version"]: e for e in payload["versions"] if isinstance(e, dict)}
    for row in rows:
        entry = by_version.get(row["version"])
        if entry is not None and entry.get("download_count") is not None:
            assert row["download_count"] == entry["download_count"]
        if entry is not None and entry.get("is_public") is not None:
            assert row["is_public"] is entry["is_public"]
        for key in (*RICH_STRINGS, *RICH_LISTS, "version_count"):  # typed columns, never extra
            if entry is not None and entry.get(key) is not None:
                assert row[key] == entry[key], key
        extra = json.loads(row["extra"]) if row.get("extra") else {}
        assert not set(extra) & {*RICH_STRINGS, *RICH_LISTS, "version_count", "updated_at"}
