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
from helpers import config_document, table_rows

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
