"""Flattening one `listModelVersions` body into schema rows: the contract's edge cases, exact
timestamps and counts, bad payloads as PayloadError, and the Arrow/Parquet/pandas round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import schema_row, table_rows

from connector.dataset.flatten import flatten, parse_timestamp, parse_versions, rows_to_table
from connector.dataset.schema import COLUMN_NAMES, FILE_SCHEMA, to_dataframe
from connector.errors import PayloadError, TargetError

EXTRACTED_AT = 1_792_000_000_123_456
ORG, MODEL, NAME = "acme", "sentiment-small", "acme/sentiment-small"
UUID = "3f1c2a8e-2b7d-4f59-9c61-0d6f1f6b9a01"
NOON = 1_709_208_000_000_000  # 2024-02-29T12:00:00Z in epoch microseconds
CONTRACT_CREATED = 1_790_928_900_000_000  # 2026-10-02T08:15:00Z


def run(payload: Any) -> list[dict[str, Any]]:
    """Flatten as the extractor does; each row as the table holds it (`table_rows`)."""
    return table_rows(flatten(payload, org=ORG, model=MODEL, extracted_at=EXTRACTED_AT))


def expected_row(version: str, rank: int | None, is_latest: bool, **values: Any) -> dict[str, Any]:
    """An expected row of ORG/MODEL, by column name; a column not given is null."""
    base = {"extracted_at": EXTRACTED_AT, "org": ORG, "model": MODEL, "model_name": NAME}
    return schema_row(
        **{**base, "version": version, "version_rank": rank, "is_latest": is_latest, **values}
    )


def summary(version: str, **fields: Any) -> dict[str, Any]:
    return {"version": version, **fields}


CONTRACT_EXAMPLE = {
    "name": NAME,
    "latest": {
        "id": UUID,
        "name": NAME,
        "version": "2.1.0",
        "created_at": "2026-10-02T08:15:00Z",
        "download_count": 1532,
        "framework": "safetensors",
        "is_public": False,
        "origin": {"source": "upload", "uploaded_by": "ci"},
    },
    "versions": ["2.1.0", "2.0.1", "2.0.0", "1.0.0"],
}


# --- shapes the contract allows -----------------------------------------------------------


def test_contract_example_with_plain_version_strings() -> None:
    assert run(CONTRACT_EXAMPLE) == [
        expected_row(
            "2.1.0",
            1,
            True,
            artifact_id=UUID,
            created_at=CONTRACT_CREATED,
            download_count=1532,
            framework="safetensors",
            is_public=False,
            origin='{"source":"upload","uploaded_by":"ci"}',
        ),
        expected_row("2.0.1", 2, False),
        expected_row("2.0.0", 3, False),
        expected_row("1.0.0", 4, False),
    ]


def test_rows_name_only_columns_and_the_table_follows_schema_order() -> None:
    detailed = parse_versions(CONTRACT_EXAMPLE, org=ORG, model=MODEL, extracted_at=EXTRACTED_AT)
    detail = {**CONTRACT_EXAMPLE["latest"], **RICH, "updated_at": "2026-10-02T08:15:00Z"}
    detail |= {"sha256": "ab"}  # unknown, kept in `extra`
    detailed.add_detail("2.1.0", detail)
    rows = [*flatten(CONTRACT_EXAMPLE, org=ORG, model=MODEL, extracted_at=EXTRACTED_AT)]
    rows += detailed.rows()
    assert all(set(row) <= set(COLUMN_NAMES) for row in rows)
    assert set().union(*rows) == set(COLUMN_NAMES)  # and can fill every one
    table = rows_to_table(rows)
    assert table.column_names == list(COLUMN_NAMES)
    first = table.slice(0, 1).to_pylist()[0]
    assert (first["model_name"], first["artifact_id"]) == (NAME, UUID)


def test_a_new_column_in_the_schema_reaches_the_table_without_editing_flatten() -> None:
    """The table's columns, their order and types come from the schema alone: a column added
    (here in the middle, and the order reversed) is there, null until something fills it, and
    the value of a row that names it lands in it; every other column keeps its values."""
    rows = flatten(CONTRACT_EXAMPLE, org=ORG, model=MODEL, extracted_at=EXTRACTED_AT)
    fields = list(FILE_SCHEMA)
    fields.insert(5, pa.field("sha256", pa.string(), nullable=True))
    derived = pa.schema(reversed(fields), metadata=FILE_SCHEMA.metadata)
    table = rows_to_table(rows, derived)
    assert table.schema.equals(derived, check_metadata=True)
    assert table.column("sha256").to_pylist() == [None] * len(rows)
    plain = rows_to_table(rows)
    for name in COLUMN_NAMES:
        assert table.column(name).equals(plain.column(name)), name
    filled = rows_to_table([{**row, "sha256": row["version"]} for row in rows], derived)
    assert filled.column("sha256").to_pylist() == ["2.1.0", "2.0.1", "2.0.0", "1.0.0"]


def test_versions_as_summary_objects() -> None:
    payload = {
        "name": NAME,
        "latest": None,
        "versions": [
            summary(
                "2.0.0",
                id="id-2",
                name=NAME,
                created_at="2024-02-29T12:00:00Z",
                download_count=10,
                framework="pytorch",
                is_public=True,
                origin={"b": [1, 2], "a": None},
            ),
            summary("1.0.0", id="id-1", created_at="2024-02-29T12:00:00.5Z", download_count=0),
        ],
    }
    assert run(payload) == [
        expected_row(
            "2.0.0",
            1,
            False,
            artifact_id="id-2",
            created_at=NOON,
            download_count=10,
            framework="pytorch",
            is_public=True,
            origin='{"a":null,"b":[1,2]}',
        ),
        expected_row(
            "1.0.0", 2, False, artifact_id="id-1", created_at=NOON + 500_000, download_count=0
        ),
    ]


def test_versions_mixing_strings_and_objects() -> None:
    payload = {
        "name": NAME,
        "latest": None,
        "versions": ["3.0.0", summary("2.0.0", download_count=5), "1.0.0"],
    }
    assert run(payload) == [
        expected_row("3.0.0", 1, False),
        expected_row("2.0.0", 2, False, download_count=5),
        expected_row("1.0.0", 3, False),
    ]


def test_latest_merges_onto_its_row_in_the_middle_of_the_list() -> None:
    payload = {
        "name": NAME,
        "latest": summary("2.0.0", download_count=7, framework="onnx"),
        "versions": ["3.0.0-rc.1", "2.0.0", "1.0.0"],
    }
    assert run(payload) == [
        expected_row("3.0.0-rc.1", 1, False),
        expected_row("2.0.0", 2, True, download_count=7, framework="onnx"),
        expected_row("1.0.0", 3, False),
    ]


def test_latest_missing_from_versions_gets_its_own_row_without_rank() -> None:
    payload = {
        "name": NAME,
        "latest": summary("2.0.0", download_count=3),
        "versions": ["1.1.0", "1.0.0"],
    }
    assert run(payload) == [
        expected_row("1.1.0", 1, False),
        expected_row("1.0.0", 2, False),
        expected_row("2.0.0", None, True, download_count=3),
    ]


def test_latest_with_an_empty_version_list_is_not_lost() -> None:
    payload = {"name": NAME, "latest": summary("0.1.0", id="x"), "versions": []}
    assert run(payload) == [expected_row("0.1.0", None, True, artifact_id="x")]


@pytest.mark.parametrize(
    "payload",
    [
        {"name": NAME, "latest": None, "versions": []},
        {"name": NAME, "versions": []},
    ],
    ids=["latest-null", "latest-absent"],
)
def test_model_without_versions_yields_no_rows(payload: dict[str, Any]) -> None:
    assert run(payload) == []


def test_latest_null_with_versions_marks_none_latest() -> None:
    payload = {"name": NAME, "latest": None, "versions": ["2.0.0", "1.0.0"]}
    assert [(r["version"], r["version_rank"], r["is_latest"]) for r in run(payload)] == [
        ("2.0.0", 1, False),
        ("1.0.0", 2, False),
    ]


def test_entry_wins_over_latest_which_fills_only_what_the_entry_lacks() -> None:
    payload = {
        "name": NAME,
        "latest": summary(
            "2.0.0",
            id="from-latest",
            created_at="2024-02-29T12:00:00Z",
            download_count=999,
            framework="from-latest",
            is_public=True,
            origin={"from": "latest"},
            license="mit",
            task="from-latest",
        ),
        "versions": [
            summary("2.0.0", id="from-entry", download_count=5, is_public=False, task="entry"),
            "1.0.0",
        ],
    }
    first = run(payload)[0]
    assert first == schema_row(
        **{
            "extracted_at": EXTRACTED_AT,
            "org": ORG,
            "model": MODEL,
            "model_name": NAME,
            "version": "2.0.0",
            "version_rank": 1,
            "is_latest": True,
            "artifact_id": "from-entry",
            "created_at": NOON,
            "download_count": 5,
            "framework": "from-latest",
            "is_public": False,
            "origin": '{"from":"latest"}',
            "license": "mit",  # a column wherever the summary says it (v3), from latest here
            "task": "entry",
        }
    )


def test_entry_with_zero_count_and_false_flag_is_not_overridden_by_latest() -> None:
    payload = {
        "name": NAME,
        "latest": summary("1.0.0", download_count=50, is_public=True),
        "versions": [summary("1.0.0", download_count=0, is_public=False)],
    }
    row = run(payload)[0]
    assert (row["download_count"], row["is_public"]) == (0, False)


def test_omitted_fields_are_null_never_defaults() -> None:
    payload = {"name": NAME, "latest": summary("1.0.0"), "versions": [summary("1.0.0")]}
    assert run(payload) == [expected_row("1.0.0", 1, True)]


def test_explicit_nulls_are_null() -> None:
    entry = dict.fromkeys(
        ("id", "created_at", "download_count", "framework", "is_public", "origin")
    )
    payload = {"name": NAME, "versions": [{"version": "1.0.0", **entry}]}
    assert run(payload) == [expected_row("1.0.0", 1, False)]


# --- unknown fields -----------------------------------------------------------------------


def test_unknown_fields_land_in_extra_as_json() -> None:
    payload = {
        "name": NAME,
        "total": 2,
        "links": {"next": None},
        "latest": summary("2.0.0", sha256="ab", name=NAME),
        "versions": [
            summary("2.0.0", tags=["a", "b"], weights=2**70, nested={"x": [{"y": 1.5}]}),
            "1.0.0",
        ],
    }
    rows = run(payload)
    assert json.loads(rows[0]["extra"]) == {
        "_response": {"links": {"next": None}, "total": 2},
        "weights": 2**70,
        "nested": {"x": [{"y": 1.5}]},
        "sha256": "ab",
    }
    assert rows[0]["tags"] == ["a", "b"]  # a known field is a column, never `extra`
    assert rows[1]["extra"] is None


def test_unknown_response_fields_are_kept_once_on_the_first_row() -> None:
    payload = {"name": NAME, "total": 2, "links": {"next": None}, "versions": ["2", "1"]}
    assert [r["extra"] for r in run(payload)] == [
        '{"_response":{"links":{"next":null},"total":2}}',
        None,
    ]


def test_unknown_response_fields_of_a_model_with_only_latest_are_kept() -> None:
    payload = {"name": NAME, "page": 1, "latest": summary("1"), "versions": []}
    assert [r["extra"] for r in run(payload)] == ['{"_response":{"page":1}}']


def test_extra_keeps_non_ascii_text_readable() -> None:
    payload = {"name": NAME, "versions": [summary("1.0.0", note="modèle ✓")]}
    assert run(payload)[0]["extra"] == '{"note":"modèle ✓"}'


@pytest.mark.parametrize("entry_name", [NAME, MODEL, None])
def test_an_entry_naming_the_model_asked_for_is_taken(entry_name: str | None) -> None:
    payload = {"name": NAME, "versions": [summary("1.0.0", name=entry_name)]}
    assert run(payload)[0]["extra"] is None


def test_a_key_spelled_like_a_known_one_is_not_confused() -> None:
    payload = {"name": NAME, "versions": [summary("1.0.0", Download_Count=5, downloads=6)]}
    row = run(payload)[0]
    assert row["download_count"] is None
    assert json.loads(row["extra"]) == {"Download_Count": 5, "downloads": 6}


# --- any string is accepted, exactly -----------------------------------------------------------


WEIRD_STRINGS = [
    "",
    " 1.0.0 ",
    "v1",
    "01.002.0003",
    "1.0.0-alpha+build.5",
    "latest",
    "2024.02.29",
    "a/b/c",
    "🙂",
    "模型",
    "null",
    "x" * 5000,
    "tab\there\nnewline",
]


@pytest.mark.parametrize("text", WEIRD_STRINGS, ids=range(len(WEIRD_STRINGS)))
def test_any_string_is_kept_exactly(text: str) -> None:
    payload = {
        "name": NAME,
        "latest": summary(text, id=text, framework=text, pretty_name=text),
        "versions": [text, summary(text + "-obj", id=text, framework=text, tags=[text])],
    }
    rows = run(payload)
    assert rows == [
        expected_row(text, 1, True, artifact_id=text, framework=text, pretty_name=text),
        expected_row(text + "-obj", 2, False, artifact_id=text, framework=text, tags=[text]),
    ]
    table = rows_to_table(rows)
    assert table.column("version").to_pylist() == [text, text + "-obj"]


@pytest.mark.parametrize("name", [NAME, MODEL])
def test_the_list_may_name_the_model_by_slug_or_org_slash_model(name: str) -> None:
    """The contract documents the list's `name` as "Model name" (either form); the column
    holds the canonical `org/model` whichever the registry sent."""
    payload = {"name": name, "versions": ["1"]}
    assert run(payload)[0]["model_name"] == NAME


def test_lone_surrogate_in_extra_is_kept_as_a_json_escape() -> None:
    payload = json.loads(
        '{"name": "sentiment-small", "versions": [{"version": "1", "note": "a\\ud800b"}]}'
    )
    rows = run(payload)
    extra = table_rows(rows)[0]["extra"]
    assert extra == '{"note":"a\\ud800b"}'
    assert json.loads(extra) == {"note": "a\ud800b"}
    assert rows_to_table(rows).column("extra").to_pylist() == [extra]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"name": "a\\udc00", "versions": []}', "name: 'a\\udc00' is not valid Unicode"),
        (
            '{"name": "sentiment-small", "versions": ["\\ud800"]}',
            "versions[0]: '\\ud800' is not valid Unicode",
        ),
        (
            '{"name": "sentiment-small", "versions": [{"version": "1", "id": "\\ud800"}]}',
            "versions[0].id: '\\ud800' is not valid Unicode",
        ),
        (
            '{"name": "sentiment-small", "versions": [], "latest": {"version": "\\ud800"}}',
            "latest.version: '\\ud800' is not valid Unicode",
        ),
    ],
)
def test_lone_surrogate_in_a_string_column_fails_the_model(body: str, detail: str) -> None:
    with pytest.raises(PayloadError) as caught:
        run(json.loads(body))
    assert caught.value.detail == f"{detail} (lone surrogate)"
    assert (caught.value.org, caught.value.model) == (ORG, MODEL)


def test_too_deeply_nested_unknown_field_fails_the_model() -> None:
    payload: dict[str, Any] = {"name": NAME, "versions": [{"version": "1", "deep": []}]}
    node: list[Any] = payload["versions"][0]["deep"]
    for _ in range(100_000):
        node.append([])
        node = node[0]
    with pytest.raises(PayloadError) as caught:
        run(payload)
    assert caught.value.detail == "body nested too deeply to record"
    assert (caught.value.org, caught.value.model) == (ORG, MODEL)


# --- counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 2**53 - 1, 2**53, 2**53 + 1, 2**62 + 3, 2**63 - 1])
def test_download_counts_are_exact_ints(count: int) -> None:
    row = run({"name": NAME, "versions": [summary("1", download_count=count)]})[0]
    assert type(row["download_count"]) is int
    assert row["download_count"] == count
    table = rows_to_table(run({"name": NAME, "versions": [summary("1", download_count=count)]}))
    assert table.column("download_count").to_pylist() == [count]


def test_huge_counts_survive_parquet_and_pandas(tmp_path: Path) -> None:
    payload = {
        "name": NAME,
        "latest": None,
        "versions": [
            summary("3", download_count=2**53 + 1),
            summary("2", download_count=2**63 - 1),
            "1",
        ],
    }
    table = rows_to_table(run(payload))
    path = tmp_path / "part.parquet"
    pq.write_table(table, path)
    back = pq.read_table(path)

    assert back.schema.equals(FILE_SCHEMA, check_metadata=True)
    assert back.column("download_count").to_pylist() == [2**53 + 1, 2**63 - 1, None]
    assert back.equals(table)

    frame = to_dataframe(back)
    counts = frame["download_count"]
    assert counts.dtype == pd.Int64Dtype()
    assert [int(counts.iloc[0]), int(counts.iloc[1])] == [2**53 + 1, 2**63 - 1]
    assert counts.iloc[0] - 2**53 == 1
    assert counts.iloc[2] is pd.NA
    assert frame["version_rank"].dtype == pd.Int32Dtype()
    assert frame["is_latest"].dtype == pd.BooleanDtype()


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-02-29T12:00:00Z", NOON),
        ("2024-02-29T12:00:00+00:00", NOON),
        ("2024-02-29T12:00:00-00:00", NOON),
        ("2024-02-29T17:30:00+05:30", NOON),
        ("2024-02-29T04:00:00-08:00", NOON),
        ("2024-03-01T01:45:00+13:45", NOON),
        ("2024-02-29T17:30:00+0530", NOON),
        ("2024-02-29T12:00:00", NOON),  # no offset: UTC
        ("2024-02-29 12:00:00Z", NOON),
        ("2024-02-29T12:00Z", NOON),
        ("20240229T120000Z", NOON),
        ("2024-02-29T12:00:00.1Z", NOON + 100_000),
        ("2024-02-29T12:00:00.12Z", NOON + 120_000),
        ("2024-02-29T12:00:00.123Z", NOON + 123_000),
        ("2024-02-29T12:00:00.1234Z", NOON + 123_400),
        ("2024-02-29T12:00:00.12345Z", NOON + 123_450),
        ("2024-02-29T12:00:00.123456Z", NOON + 123_456),
        ("2024-02-29T12:00:00.1234567Z", NOON + 123_456),
        ("2024-02-29T12:00:00.12345678Z", NOON + 123_456),
        ("2024-02-29T12:00:00.123456789Z", NOON + 123_456),
        ("2024-02-29T12:00:00.999999999Z", NOON + 999_999),  # truncated, not rounded up
        ("2024-02-29T12:00:00,25Z", NOON + 250_000),
        ("2024-02-29T13:00:00.5+01:00", NOON + 500_000),
        ("2024-02-29T24:00:00Z", NOON + 12 * 3_600_000_000),  # end of day
        ("0001-01-01T00:00:00Z", -62_135_596_800_000_000),
        ("0001-01-01T05:30:00+05:30", -62_135_596_800_000_000),
        ("9999-12-31T23:59:59.999999Z", 253_402_300_799_999_999),
        ("9999-12-31T15:59:59.999999-08:00", 253_402_300_799_999_999),
        ("1969-12-31T23:59:59.999999Z", -1),
        ("1970-01-01T00:00:00Z", 0),
        ("2016-12-31T23:59:60Z", 1_483_228_800_000_000),  # leap second
        ("2016-12-31T23:59:60.5Z", 1_483_228_800_500_000),
        ("2017-01-01T05:29:60+05:30", 1_483_228_800_000_000),
        ("2016-12-31T15:59:60-08:00", 1_483_228_800_000_000),
    ],
)
def test_parse_timestamp_exact_epoch_microseconds(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "1709208000",
        "2024-02-30T12:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-02-29T25:00:00Z",
        "2024-02-29T12:61:00Z",
        "2024-02-29T24:00:01Z",
        "2024-02-29T24:00:00.5Z",
        "2024-02-29T12:00:00+25:00",
        "2024-02-29T12:00:00ZZ",
        "12:00:00",
    ],
)
def test_parse_timestamp_rejects_non_iso_text(text: str) -> None:
    with pytest.raises(ValueError, match="ISO"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2024-02-29T17:30:00.5+05:30", datetime(2024, 2, 29, 12, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_created_at_becomes_a_utc_arrow_timestamp(text: str, expected: datetime) -> None:
    table = rows_to_table(run({"name": NAME, "versions": [summary("1", created_at=text)]}))
    assert table.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("created_at").to_pylist() == [expected]


# --- payloads that fail the model ----------------------------------------------------------------


def entry_with(**fields: Any) -> dict[str, Any]:
    return {"name": NAME, "versions": [summary("1.0.0", **fields)]}


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ([], "body is a JSON list, expected an object"),
        ("text", "body is a JSON str, expected an object"),
        (None, "body is a JSON null, expected an object"),
        (42, "body is a JSON int, expected an object"),
        ({"versions": []}, "name: missing"),
        ({"name": None, "versions": []}, "name: missing"),
        ({"name": ["a"], "versions": []}, "name: a list, expected a string"),
        ({"name": NAME}, "versions: missing"),
        ({"name": NAME, "versions": "1.0.0"}, "versions: a str, expected a list"),
        ({"name": NAME, "versions": {"1.0.0": {}}}, "versions: a dict, expected a list"),
        (
            {"name": NAME, "versions": [], "latest": "1.0.0"},
            "latest: a str, expected an object or null",
        ),
        (
            {"name": NAME, "versions": ["1", 2]},
            "versions[1]: a int, expected a string or an object",
        ),
        (
            {"name": NAME, "versions": [None]},
            "versions[0]: a null, expected a string or an object",
        ),
        (
            {"name": NAME, "versions": [["1.0.0"]]},
            "versions[0]: a list, expected a string or an object",
        ),
        ({"name": NAME, "versions": [{}]}, "versions[0].version: expected a string, got null"),
        (
            {"name": NAME, "versions": [{"version": 1.0}]},
            "versions[0].version: expected a string, got float",
        ),
        (
            {"name": NAME, "versions": [{"version": "1", "name": ["a"]}]},
            "versions[0].name: expected a string, got list",
        ),
        (
            entry_with(download_count="12"),
            "versions[0].download_count: expected an integer, got str '12'",
        ),
        (entry_with(download_count=-1), "versions[0].download_count: -1 is out of range"),
        (
            entry_with(download_count=2**63),
            "versions[0].download_count: 9223372036854775808 is out of range",
        ),
        (
            entry_with(download_count=12.0),
            "versions[0].download_count: expected an integer, got float 12.0",
        ),
        (
            entry_with(download_count=True),
            "versions[0].download_count: expected an integer, got bool True",
        ),
        (
            entry_with(created_at="yesterday"),
            "versions[0].created_at: not an ISO 8601 timestamp: 'yesterday'",
        ),
        (
            entry_with(created_at=1709208000),
            "versions[0].created_at: expected a string, got int",
        ),
        (entry_with(is_public="yes"), "versions[0].is_public: expected a boolean, got str"),
        (entry_with(is_public=1), "versions[0].is_public: expected a boolean, got int"),
        (entry_with(id=5), "versions[0].id: expected a string, got int"),
        (entry_with(framework=["pt"]), "versions[0].framework: expected a string, got list"),
        (
            {"name": NAME, "versions": [], "latest": {"download_count": 1}},
            "latest.version: expected a string, got null",
        ),
        (
            {"name": NAME, "versions": ["1.0.0"], "latest": summary("1.0.0", download_count=-5)},
            "latest.download_count: -5 is out of range",
        ),
    ],
)
def test_bad_payload_raises_payload_error_naming_the_field(payload: Any, detail: str) -> None:
    with pytest.raises(PayloadError) as caught:
        flatten(payload, org=ORG, model=MODEL, extracted_at=EXTRACTED_AT)
    error = caught.value
    assert error.detail == detail
    assert (error.org, error.model) == (ORG, MODEL)
    assert error.error_type == "invalid_payload"
    assert str(error) == f"{ORG}/{MODEL}: invalid_payload: {detail}"
    assert isinstance(error, TargetError)


@pytest.mark.parametrize(
    ("versions", "detail"),
    [
        (["1.0.0", "2.0.0", "1.0.0"], "duplicate version '1.0.0' at versions[0] and versions[2]"),
        (
            [summary("1.0.0"), summary("1.0.0", download_count=3)],
            "duplicate version '1.0.0' at versions[0] and versions[1]",
        ),
        (["2.0.0", summary("2.0.0")], "duplicate version '2.0.0' at versions[0] and versions[1]"),
        (
            [summary("2.0.0"), "x", "2.0.0"],
            "duplicate version '2.0.0' at versions[0] and versions[2]",
        ),
    ],
    ids=["strings", "objects", "string-then-object", "object-then-string"],
)
def test_duplicate_versions_fail_the_model(versions: list[Any], detail: str) -> None:
    with pytest.raises(PayloadError) as caught:
        run({"name": NAME, "latest": None, "versions": versions})
    assert caught.value.detail == detail
    assert caught.value.error_type == "duplicate_version"
    assert (caught.value.org, caught.value.model) == (ORG, MODEL)


def test_versions_differing_only_in_spelling_are_not_duplicates() -> None:
    rows = run({"name": NAME, "versions": ["1.0.0", "v1.0.0", "1.0.0 ", "1.0"]})
    assert [r["version"] for r in rows] == ["1.0.0", "v1.0.0", "1.0.0 ", "1.0"]


# --- Arrow ---------------------------------------------------------------------------------


def test_rows_to_table_matches_the_file_schema() -> None:
    table = rows_to_table(run(CONTRACT_EXAMPLE))
    assert table.schema.equals(FILE_SCHEMA, check_metadata=True)
    assert table.num_rows == 4
    assert table.column("version_rank").to_pylist() == [1, 2, 3, 4]
    assert table.column("is_latest").to_pylist() == [True, False, False, False]
    assert (
        table.column("extracted_at").to_pylist()
        == [datetime(2026, 10, 14, 17, 46, 40, 123456, tzinfo=UTC)] * 4
    )
    assert table.column("created_at").to_pylist() == [
        datetime(2026, 10, 2, 8, 15, tzinfo=UTC),
        None,
        None,
        None,
    ]


def test_rows_to_table_with_no_rows_is_an_empty_table_under_the_schema() -> None:
    table = rows_to_table([])
    assert table.num_rows == 0
    assert table.schema.equals(FILE_SCHEMA, check_metadata=True)


def test_rows_to_table_keeps_a_null_rank_for_a_latest_outside_the_list() -> None:
    rows = run({"name": NAME, "latest": summary("9"), "versions": ["1"]})
    table = rows_to_table(rows)
    assert table.column("version_rank").to_pylist() == [1, None]
    assert table.column("is_latest").to_pylist() == [False, True]


@pytest.mark.parametrize("text", ["9999-12-31T23:00:00-08:00", "0001-01-01T00:30:00+01:00"])
def test_timestamps_outside_years_1_to_9999_in_utc_are_rejected(text: str) -> None:
    payload = {"name": "a/b", "versions": [{"version": "1", "created_at": text}]}
    with pytest.raises(PayloadError, match="outside the years 0001-9999"):
        flatten(payload, org="a", model="b", extracted_at=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-02t08:15:00z", 1_790_928_900_000_000),  # RFC 3339 allows lower case
        ("2026-275T08:15:00Z", 1_790_928_900_000_000),  # ordinal date: day 275 of 2026
        ("2026275T081500Z", 1_790_928_900_000_000),
        ("2026-10-02T24:00Z", 1_790_985_600_000_000),  # end of day without seconds
    ],
)
def test_more_iso_8601_forms(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text", ["2026-10-02T08:15:60Z", "2026-400T00:00:00Z", "2026-10-02T08:15:00Z" + "0" * 80]
)
def test_impossible_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


RICH = {
    "pretty_name": "Sentiment (small)",
    "summary": "One line.",
    "task": "text-classification",
    "architecture": "BertForSequenceClassification",
    "base_model": "acme/base@1.0.0",
    "license": "apache-2.0",
    "size_category": "<1B",
    "language": ["en", "de"],
    "tags": ["nlp"],
    "task_categories": ["nlp"],
    "aliases": ["prod"],
    "version_count": 2,
    "file_size_bytes": 2**40,
}


@pytest.mark.parametrize("where", ["latest", "entry"])
def test_every_summary_field_is_a_column_wherever_the_list_says_it(where: str) -> None:
    """v2 kept `latest`'s license, task and tags in `extra` while a detail row had them as
    columns: two rows of one model disagreed about where a field lives."""
    fields = {**RICH, "updated_at": "2026-10-02T08:15:00Z"}
    payload = {
        "name": NAME,
        "latest": summary("2.0.0", **(fields if where == "latest" else {})),
        "versions": [
            summary("2.0.0", **(fields if where == "entry" else {})),
            summary("1.0.0", **fields),
        ],
    }
    newest, older = run(payload)
    for row in (newest, older):
        assert {key: row[key] for key in RICH} == RICH
        assert row["updated_at"] == CONTRACT_CREATED
        assert row["extra"] is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"name": "acme/other"}, "versions[0].name: 'acme/other' names another model"),
        ({"name": "other/sentiment-small"}, "versions[0].name: 'other/sentiment-small' names"),
        ({"name": 7}, "versions[0].name: expected a string, got int"),
        ({"version_count": -1}, "versions[0].version_count: -1 is out of range"),
        ({"language": "en"}, "versions[0].language: expected a list of strings"),
        ({"updated_at": 5}, "versions[0].updated_at: expected a string, got int"),
        ({"pretty_name": ["x"]}, "versions[0].pretty_name: expected a string, got list"),
    ],
)
def test_a_summary_field_of_the_wrong_kind_or_model_fails_the_model(
    entry: dict[str, Any], problem: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        run({"name": NAME, "versions": [summary("1.0.0", **entry)]})
    assert caught.value.detail.startswith(problem)


@pytest.mark.parametrize(
    "name", ["acme/other", "other", "acme/sentiment-small/x", "ACME/sentiment-small"]
)
def test_a_list_naming_another_model_is_not_the_answer_to_this_request(name: str) -> None:
    with pytest.raises(PayloadError) as caught:
        run({"name": name, "versions": ["1.0.0"]})
    assert caught.value.detail == (
        f"name: {name!r} names another model than the one requested ('acme/sentiment-small' "
        "or 'sentiment-small'): the body is not the answer to this request"
    )
    assert (caught.value.org, caught.value.model) == (ORG, MODEL)
