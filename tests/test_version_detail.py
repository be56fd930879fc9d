"""Per-version detail (getModelVersion): merged onto the rows, validated, and its failures
isolated per model; a 404 drops only that version's row."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from ground_truth import dataset_rows, expected, project
from helpers import TOKEN, ScriptedServer, config_document, json_reply, table_rows

from connector import extract
from connector.config import parse_config
from connector.dataset.flatten import parse_versions
from connector.errors import ExitCode, PayloadError
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
NAME = "acme/m"
LIST_BODY = {
    "name": NAME,
    "latest": {"id": "a2", "name": NAME, "version": "2.0.0", "download_count": 20},
    "versions": ["2.0.0", {"version": "1.5.0", "download_count": 15}, "1.0.0"],
}


def versions() -> Any:
    return parse_versions(LIST_BODY, org="acme", model="m", extracted_at=0)


def as_dict(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the table holds it: every column, null where the row leaves one out."""
    return table_rows([row])[0]


# --- merging, in flatten ------------------------------------------------------------------


def test_missing_asks_only_for_versions_without_a_summary() -> None:
    listed = versions()
    assert listed.needing_detail("missing") == ["1.0.0"]
    assert listed.needing_detail("all") == ["2.0.0", "1.5.0", "1.0.0"]
    assert listed.needing_detail("off") == []


def test_a_detail_fills_its_row_and_wins_over_the_list_entry() -> None:
    listed = versions()
    listed.add_detail(
        "1.0.0",
        {
            "id": "a1",
            "name": NAME,
            "version": "1.0.0",
            "created_at": "2026-01-01T00:00:00Z",
            "download_count": 7,
            "framework": "onnx",
            "is_public": True,
            "origin": {"source": "ci"},
            "file_size_bytes": 2**40,
            "license": "mit",
            "task": "embeddings",
            "tags": ["nlp", "quantized"],
            "sha": "abc",
        },
    )
    listed.add_detail("1.5.0", {"version": "1.5.0", "download_count": 16, "license": None})
    rows = [as_dict(row) for row in listed.rows()]
    old = rows[2]
    assert (old["version"], old["version_rank"], old["is_latest"]) == ("1.0.0", 3, False)
    assert old["artifact_id"] == "a1" and old["download_count"] == 7
    assert (old["file_size_bytes"], old["license"], old["task"]) == (2**40, "mit", "embeddings")
    assert old["tags"] == ["nlp", "quantized"]
    assert json.loads(old["extra"]) == {"sha": "abc"}
    assert rows[1]["download_count"] == 16  # the detail wins over the entry
    assert rows[0]["file_size_bytes"] is None  # no detail fetched for the latest


@pytest.mark.parametrize(
    "detail,message",
    [
        ({"version": "9.9.9"}, "answered for version '9.9.9'"),
        ({"version": "1.0.0", "tags": "nlp"}, "tags: expected a list of strings"),
        ({"version": "1.0.0", "tags": ["a", 1]}, "tags: expected a list of strings"),
        ({"version": "1.0.0", "file_size_bytes": -1}, "file_size_bytes: -1 is out of range"),
        ({"version": "1.0.0", "file_size_bytes": 1.5}, "file_size_bytes: expected an integer"),
        ({"version": "1.0.0", "license": 3}, "license: expected a string"),
        ({"version": "1.0.0", "download_count": "7"}, "download_count: expected an integer"),
        (["1.0.0"], "body is a JSON list"),
    ],
)
def test_an_invalid_detail_fails_the_model_naming_the_version(detail: Any, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        versions().add_detail("1.0.0", detail)
    assert "getModelVersion '1.0.0'" in caught.value.detail
    assert message in caught.value.detail
    assert (caught.value.org, caught.value.model) == ("acme", "m")


def test_a_dropped_version_has_no_row_and_the_others_keep_their_rank() -> None:
    listed = versions()
    listed.drop("1.5.0")
    assert [(as_dict(r)["version"], as_dict(r)["version_rank"]) for r in listed.rows()] == [
        ("2.0.0", 1),
        ("1.0.0", 3),
    ]


# --- against the simulator ----------------------------------------------------------------


def run(registry: SimulatedRegistry, out: Path, **registry_settings: Any) -> Any:
    document = config_document(registry, out, registry_settings=registry_settings)
    return extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)


def test_a_detail_failing_after_retries_fails_its_model_as_a_whole(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=10)
    victim = next(r for r in registry.expected_rows(1) if not r["is_latest"])
    key = f"{victim['org']}/{victim['model']}/{victim['version']}"
    registry.set_faults(FaultPlan(detail_status={key: 503}))
    summary = run(registry, tmp_path / "out")
    assert summary.exit_code == ExitCode.PARTIAL
    [failure] = summary.failures
    assert (failure.org, failure.model, failure.status) == (
        victim["org"],
        victim["model"],
        503,
    )
    assert f"getModelVersion {victim['version']!r}" in failure.detail
    assert failure.attempts == 5  # retried like any request (config_document: 5 attempts)
    rows = dataset_rows(tmp_path / "out")
    assert not [r for r in rows if r["model"] == victim["model"]]  # never half filled
    others = [r for r in expected(registry, 1) if r["model"] != victim["model"]]
    assert project(rows) == project(others)


def test_a_404_on_one_detail_drops_that_row_and_is_recorded_not_failed(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=6)
    victim = next(r for r in registry.expected_rows(1) if not r["is_latest"])
    key = f"{victim['org']}/{victim['model']}/{victim['version']}"
    registry.set_faults(FaultPlan(detail_status={key: 404}))
    summary = run(registry, tmp_path / "out")
    assert summary.exit_code == ExitCode.OK
    assert summary.failures == ()
    assert summary.dropped_versions == [
        {
            "org": victim["org"],
            "model": victim["model"],
            "version": victim["version"],
            "detail": f"Simulated HTTP 404 for {victim['org']}/{victim['model']}",
        }
    ]
    partition = tmp_path / "out" / "model_versions" / "snapshot_date=2026-01-01"
    manifest = json.loads((partition / "_manifest.json").read_text())
    assert manifest["dropped_versions"] == summary.dropped_versions
    gone = (victim["org"], victim["model"], victim["version"])
    truth = [r for r in expected(registry, 1) if (r["org"], r["model"], r["version"]) != gone]
    assert project(dataset_rows(tmp_path / "out")) == project(truth)


def test_detail_requests_survive_transient_faults_and_are_counted(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=5, versions_shape="mixed")
    registry.set_faults(FaultPlan(seed=5, rate_5xx=0.1, rate_429=0.05, rate_reset=0.05))
    summary = run(registry, tmp_path / "out", version_detail="all")
    assert summary.exit_code == ExitCode.OK, summary.failures
    assert project(dataset_rows(tmp_path / "out")) == project(expected(registry, 1, "all"))
    operations = summary.requests_by_operation
    assert operations["getModelVersion"] > len(registry.expected_rows(1))  # some were retried
    assert sum(operations.values()) == sum(summary.requests.values())


def test_a_forbidden_org_blocks_its_detail_requests_too(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3)
    registry.set_faults(FaultPlan(forbidden_orgs=frozenset({"org-01"})))
    summary = run(registry, tmp_path / "out", concurrency=1)
    assert summary.exit_code == ExitCode.AUTH
    org01 = [f for f in summary.failures if f.org == "org-01"]
    assert [f.error_type for f in org01].count("permission_error") == 1
    assert [f.error_type for f in org01].count("skipped") == 2
    assert summary.requests_by_operation.get("getModelVersion", 0) == sum(
        1 for r in registry.expected_rows(1) if r["org"] == "org-00" and not r["is_latest"]
    )


# --- the whole summary, wherever the registry says it (schema v3) -------------------------


def test_a_detail_fills_every_rich_field_and_the_list_fills_what_it_lacks() -> None:
    listed = parse_versions(
        {
            "name": "m",  # the slug: the contract allows either form for the list
            "latest": {"version": "2.0.0", "name": NAME, "license": "mit", "aliases": ["prod"]},
            "versions": ["2.0.0", "1.0.0"],
        },
        org="acme",
        model="m",
        extracted_at=0,
    )
    listed.add_detail(
        "1.0.0",
        {
            "version": "1.0.0",
            "name": "acme/m",
            "pretty_name": "M",
            "summary": "s",
            "architecture": "ViTModel",
            "base_model": "acme/base@1.0.0",
            "size_category": "<1B",
            "language": ["en"],
            "task_categories": ["vision"],
            "aliases": [],
            "version_count": 2,
            "updated_at": "2026-01-02T00:00:00+01:00",
        },
    )
    latest, old = (as_dict(row) for row in listed.rows())
    assert (latest["model_name"], latest["license"], latest["aliases"]) == (NAME, "mit", ["prod"])
    assert latest["pretty_name"] is None  # the list said nothing more of it
    assert {k: old[k] for k in ("pretty_name", "language", "aliases", "version_count")} == {
        "pretty_name": "M",
        "language": ["en"],
        "aliases": [],
        "version_count": 2,
    }
    assert old["updated_at"] == 1_767_308_400_000_000  # 2026-01-01T23:00:00Z
    assert old["extra"] is None


@pytest.mark.parametrize(
    "detail,message",
    [
        (
            {"version": "1.0.0", "name": "acme/other"},
            "getModelVersion '1.0.0'.name: 'acme/other' names another model than the one "
            "requested ('acme/m' or 'm'): the body is not the answer to this request",
        ),
        ({"version": "1.0.0", "name": "other/m"}, "names another model"),
        ({"version": "1.0.0", "name": "ACME/M"}, "names another model"),  # compared exactly
        ({"version": "1.0.1"}, "answered for version '1.0.1': not the answer to this request"),
        ({"version": "1.0.0", "version_count": 2**31}, "version_count: 2147483648 is out of"),
        ({"version": "1.0.0", "aliases": "prod"}, "aliases: expected a list of strings"),
        ({"version": "1.0.0", "updated_at": "soon"}, "updated_at: not an ISO 8601 timestamp"),
    ],
)
def test_a_detail_for_another_model_or_version_is_not_this_model_s_data(
    detail: dict[str, Any], message: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        versions().add_detail("1.0.0", detail, b"the body")
    assert message in caught.value.detail
    assert caught.value.raw == b"the body"


def test_a_wrong_model_body_is_rejected_with_the_request_it_answered(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=10)
    registry.set_faults(FaultPlan(malformed={"org-00/model-0001": "wrong_model"}))
    summary = run(registry, tmp_path / "out")
    assert summary.exit_code == ExitCode.PARTIAL
    [failure] = summary.failures
    assert (failure.model, failure.error_type) == ("model-0001", "invalid_payload")
    assert "'org-00/model-0001-other' names another model" in failure.detail
    rows = dataset_rows(tmp_path / "out")
    assert "model-0001" not in {row["model"] for row in rows}
    kept = json.loads(
        (tmp_path / "out" / "_rejected" / "2026-01-01" / "org-00" / "model-0001.json").read_text()
    )
    assert kept["request"] == "GET /api/v1/org/org-00/models/model-0001/versions"
    assert '"name":"org-00/model-0001-other"' in kept["body"]


def test_a_detail_answering_for_another_version_fails_its_model_and_is_kept(
    tmp_path: Path, token_env: str
) -> None:
    wrong = {"version": "9.9.9", "name": NAME, "download_count": 5}
    script = [json_reply(200, LIST_BODY), json_reply(200, wrong)]
    with ScriptedServer(script) as server:
        document = config_document(
            server,  # type: ignore[arg-type]
            tmp_path / "out",
            orgs=[{"name": "acme", "models": ["m"]}],
            registry_settings={"concurrency": 1},
        )
        summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.NOT_PUBLISHED
    [failure] = summary.failures
    assert "getModelVersion '1.0.0': answered for version '9.9.9'" in failure.detail
    kept = json.loads(
        (tmp_path / "out" / "_rejected" / "2026-01-01" / "acme" / "m.json").read_text()
    )
    assert kept["request"] == "GET /api/v1/org/acme/models/m/1.0.0"
    assert json.loads(kept["body"]) == wrong
    assert TOKEN not in json.dumps(kept)


@pytest.mark.parametrize("listed", ["..", ".", "", "a/b"])
def test_a_listed_version_that_cannot_be_a_path_segment_fails_its_model_unsent(
    listed: str, tmp_path: Path, token_env: str
) -> None:
    body = {**LIST_BODY, "versions": ["2.0.0", listed, "1.0.0"]}
    with ScriptedServer([json_reply(200, body), json_reply(200, {})]) as server:
        document = config_document(
            server,  # type: ignore[arg-type]
            tmp_path / "out",
            orgs=[{"name": "acme", "models": ["m"]}],
            registry_settings={"concurrency": 1},
        )
        summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    [failure] = summary.failures
    assert (failure.error_type, failure.model) == ("invalid_slug", "m")
    assert f"getModelVersion {listed!r}: version {listed!r} cannot be sent" in failure.detail
    assert server.paths == ["/api/v1/org/acme/models/m/versions"]  # and nothing else, ever


# --- bounded, and linear --------------------------------------------------------------------


def test_details_past_the_cap_leave_null_counts_and_a_warning_naming_the_model(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3, versions_per_model=8, seed=3)
    summary = run(registry, tmp_path / "out", version_detail="all", max_version_details=2)
    assert summary.exit_code == ExitCode.OK, summary.failures
    rows = dataset_rows(tmp_path / "out")
    truth = {(r["model"], r["version"]): r for r in expected(registry, 1, "all")}
    for row in rows:
        fetched = row["version_rank"] <= 2  # the newest two of each model
        assert (row["file_size_bytes"] is not None) is fetched
        counted = fetched or row["is_latest"]
        assert row["download_count"] == (
            truth[(row["model"], row["version"])]["download_count"] if counted else None
        )
    capped = sorted({r["model"] for r in rows if r["version_rank"] > 2})
    assert capped and sorted(w.split(":")[0] for w in summary.warnings) == [
        f"org-00/{model}" for model in capped
    ]
    assert (
        "more than registry.max_version_details=2: the newest 2 were fetched"
        in (summary.warnings[0])
    )
    assert summary.requests_by_operation["getModelVersion"] == sum(
        min(2, len([r for r in rows if r["model"] == m])) for m in {r["model"] for r in rows}
    )


class CountedVersion(str):
    """A version string that counts how often it is compared for equality."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        CountedVersion.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_merging_and_dropping_details_is_linear_in_the_number_of_versions() -> None:
    """Each add_detail and drop finds its version directly: a search through the list (or a
    rebuilt list per drop) would compare n^2/2 times, 20 million for these 6,000 versions."""
    count = 6_000
    names = [f"1.0.{i}" for i in range(count)]
    listed = parse_versions(
        {"name": NAME, "versions": names}, org="acme", model="m", extracted_at=0
    )
    CountedVersion.comparisons = 0
    for index, name in enumerate(names):
        version = CountedVersion(name)
        if index % 2:
            listed.drop(version)
        else:
            listed.add_detail(version, {"version": name, "download_count": index})
    assert CountedVersion.comparisons <= 2 * count
    rows = listed.rows()
    assert len(rows) == count // 2
    assert rows[-1]["download_count"] == count - 2
