"""OpenLineage run events, captured by a lineage backend on 127.0.0.1 and validated against
the spec (`lineage_receiver.validate`): one START and one final event per run, named after the
config, the run id of its record, the orchestrator's run as parent, inputs and output with
their facets. Off unless configured; a backend that fails never fails a run."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import TOKEN, config_document, write_config
from lineage_receiver import Receiver, validate

from connector import extract, publish
from connector.config import load_config
from connector.dataset.locate import open_store
from connector.dataset.reader import data_files, read_manifest
from connector.dataset.schema import DATASET_SCHEMA, FILE_SCHEMA
from connector.errors import ConfigError, ExitCode
from connector.extraction import lineage
from connector.extraction.interrupt import Interrupt
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY = date(2026, 1, 1)
PARENT = "airflow-prod/model_versions.extract_snapshot/01890f3e-7a1b-7c3d-8e4f-0123456789ab"
ROOT = "airflow-prod/model_versions/01890f3e-7a1b-7c3d-8e4f-fedcba987654"


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A lineage backend, configured the standard way (OPENLINEAGE_URL). The client copies
    that into OPENLINEAGE__TRANSPORT__* variables of the process: removed afterwards."""
    before = set(os.environ)
    receiver = Receiver().start()
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
    for name in ("OPENLINEAGE_NAMESPACE", "OPENLINEAGE_PARENT_ID", "OPENLINEAGE_ROOT_PARENT_ID"):
        monkeypatch.delenv(name, raising=False)
    yield receiver
    receiver.stop()
    for name in set(os.environ) - before:
        if name.startswith("OPENLINEAGE"):
            del os.environ[name]


def configured(
    registry: SimulatedRegistry,
    tmp_path: Path,
    name: str = "daily",
    orgs: list[dict[str, Any]] | None = None,
    **output: Any,
) -> Any:
    document = config_document(registry, tmp_path / "out", output_settings=output, orgs=orgs)
    path = write_config(tmp_path / f"{name}.yaml", document)
    return load_config(path, env={"MODEL_REGISTRY_TOKEN": TOKEN})


def one_pair(backend: Receiver, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's START and final event, each valid; no other event of that run."""
    events = backend.runs()[str(uuid.UUID(run_id))]
    assert [event["eventType"] for event in events][:1] == ["START"] and len(events) == 2
    for event in events:
        validate(event)
    return events[0], events[1]


def test_an_extract_sends_one_valid_start_complete_pair(
    start_simulator: StartSimulator, tmp_path: Path, backend: Receiver
) -> None:
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="objects")
    config = configured(registry, tmp_path)
    summary = extract(config, DAY, allow_backdate=True)
    assert summary.exit_code == ExitCode.OK
    assert len(backend.events) == 2
    start, complete = one_pair(backend, summary.run_id)
    assert complete["eventType"] == "COMPLETE"
    for event in (start, complete):
        assert event["job"]["namespace"] == "model-versions-connector"
        assert event["job"]["name"] == "daily.extract"
        assert event["job"]["facets"]["jobType"]["jobType"] == "EXTRACT"
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
            (registry.url, "api/v1/orgs/org-00"),
            (registry.url, "api/v1/orgs/org-01"),
        ]
        [output] = event["outputs"]
        assert (output["namespace"], output["name"]) == (
            "file",
            str(tmp_path / "out" / "model_versions" / "snapshot_date=2026-01-01"),
        )
        fields = output["facets"]["schema"]["fields"]
        assert [f["name"] for f in fields] == DATASET_SCHEMA.names
        assert "parent" not in event["run"]["facets"]
        assert event["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith(
            "2026-01-01T00:00:00"
        )
    [file] = data_files(open_store(config.output.uri), [DAY])
    statistics = complete["outputs"][0]["outputFacets"]["outputStatistics"]
    assert statistics == {
        **{k: statistics[k] for k in ("_producer", "_schemaURL")},
        "rowCount": summary.rows,
        "size": file.size,
        "fileCount": 1,
    }
    assert "outputStatistics" not in start["outputs"][0].get("outputFacets", {})
    assert all(TOKEN.encode() not in raw for raw in backend.raw)


def _mutations() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    def drop(*path: Any) -> Callable[[dict[str, Any]], None]:
        def apply(event: dict[str, Any]) -> None:
            target = event
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]

        return apply

    def put(value: Any, *path: Any) -> Callable[[dict[str, Any]], None]:
        def apply(event: dict[str, Any]) -> None:
            target = event
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value

        return apply

    return [
        ("no run id", drop("run", "runId")),
        ("run id not a UUID", put("8baefb77554046f1951d3c73c85002f4x", "run", "runId")),
        ("no job name", drop("job", "name")),
        ("unknown event field", put(1, "rowsWritten")),
        ("event time without time", put("2026-01-01", "eventTime")),
        ("unknown event type", put("DONE", "eventType")),
        (
            "row count as text",
            put("12", "outputs", 0, "outputFacets", "outputStatistics", "rowCount"),
        ),
        (
            "facet of no schema",
            put("https://example.com/x.json", "outputs", 0, "facets", "schema", "_schemaURL"),
        ),
        ("schema field without name", drop("outputs", 0, "facets", "schema", "fields", 0, "name")),
    ]


@pytest.mark.parametrize(("what", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_the_validation_refuses_what_the_spec_refuses(
    start_simulator: StartSimulator, tmp_path: Path, backend: Receiver, what: str, mutate: Any
) -> None:
    """A validation that cannot fail proves nothing."""
    registry = start_simulator(orgs=1, models_per_org=1, versions_shape="objects")
    extract(configured(registry, tmp_path), DAY, allow_backdate=True)
    event = json.loads(json.dumps(backend.events[-1]))
    validate(event)
    mutate(event)
    with pytest.raises((AssertionError, ValueError, KeyError, TypeError)):
        validate(event)


def test_shard_runs_and_their_publish_each_send_a_pair_under_the_orchestrators_run(
    start_simulator: StartSimulator,
    tmp_path: Path,
    backend: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fan-out DAG: two shard tasks and a publish, each a job of its own under Airflow's
    task run (the library argument, or OPENLINEAGE_PARENT_ID and _ROOT_PARENT_ID)."""
    registry = start_simulator(orgs=2, models_per_org=4, versions_shape="objects")
    config = configured(registry, tmp_path, name="fanout")
    monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "registry-snapshots")
    monkeypatch.setenv("OPENLINEAGE_ROOT_PARENT_ID", ROOT)
    parts = [
        extract(config, DAY, allow_backdate=True, shard=(k, 2), lineage_parent=PARENT)
        for k in (1, 2)
    ]
    out = tmp_path / "out"
    records = [  # read before the publish removes the parts
        json.loads((out / f"_shards/2026-01-01/{k}-of-2/_shard.json").read_text()) for k in (1, 2)
    ]
    monkeypatch.setenv("OPENLINEAGE_PARENT_ID", PARENT)
    published = publish(config, DAY, shards=2)
    assert published.exit_code == ExitCode.OK
    assert len(backend.runs()) == 3 and len(backend.events) == 6
    for index, (part, record) in enumerate(zip(parts, records, strict=True), start=1):
        assert record["run_id"] == part.run_id  # the run id of the part's record
        start, complete = one_pair(backend, part.run_id)
        assert complete["eventType"] == "COMPLETE"
        assert start["job"] == {
            **start["job"],
            "namespace": "registry-snapshots",
            "name": f"fanout.shard_{index}_of_2",
        }
        [output] = complete["outputs"]
        assert output["name"] == str(out / f"_shards/2026-01-01/{index}-of-2")
        assert [f["name"] for f in output["facets"]["schema"]["fields"]] == FILE_SCHEMA.names
        assert output["outputFacets"]["outputStatistics"]["rowCount"] == part.rows
    start, complete = one_pair(backend, published.run_id)
    assert complete["job"]["name"] == "fanout.publish"
    assert [d["name"] for d in complete["inputs"]] == [
        str(out / "_shards/2026-01-01/1-of-2"),
        str(out / "_shards/2026-01-01/2-of-2"),
    ]
    for event in backend.events:
        parent = event["run"]["facets"]["parent"]
        assert (parent["job"]["namespace"], parent["job"]["name"]) == (
            "airflow-prod",
            "model_versions.extract_snapshot",
        )
        assert parent["run"]["runId"] == PARENT.rsplit("/", 1)[1]
        assert parent["root"]["run"]["runId"] == ROOT.rsplit("/", 1)[1]
    record = json.loads(Path(published.record or "").read_text())
    assert record["run_id"] == published.run_id


def test_a_delta_output_is_the_table_and_its_version(
    start_simulator: StartSimulator, tmp_path: Path, backend: Receiver
) -> None:
    registry = start_simulator(orgs=1, models_per_org=2, versions_shape="objects")
    config = configured(registry, tmp_path, format="delta")
    summary = extract(config, DAY, allow_backdate=True)
    _, complete = one_pair(backend, summary.run_id)
    [output] = complete["outputs"]
    assert output["name"] == str(tmp_path / "out" / "model_versions")
    version = read_manifest(open_store(config.output.uri), DAY)["delta_version"]  # type: ignore[index]
    assert output["facets"]["version"]["datasetVersion"] == str(version) == "0"


def test_a_run_that_publishes_nothing_fails_and_a_stopped_one_aborts(
    start_simulator: StartSimulator, tmp_path: Path, backend: Receiver
) -> None:
    registry = start_simulator(orgs=1, models_per_org=1, versions_shape="objects")
    missing = [{"name": "org-00", "models": ["model-0000", "gone-1", "gone-2"]}]  # two 404s
    config = configured(registry, tmp_path, orgs=missing)
    refused = extract(config, DAY, allow_backdate=True)
    assert refused.exit_code == ExitCode.NOT_PUBLISHED
    _, fail = one_pair(backend, refused.run_id)
    assert fail["eventType"] == "FAIL"
    assert fail["run"]["facets"]["errorMessage"]["message"].startswith("not_published (exit 8)")
    assert "outputStatistics" not in fail["outputs"][0].get("outputFacets", {})

    interrupt = Interrupt()
    interrupt.request()
    stopped = extract(config, DAY + timedelta(days=1), allow_backdate=True, interrupt=interrupt)
    assert stopped.exit_code == ExitCode.INTERRUPTED
    _, abort = one_pair(backend, stopped.run_id)
    assert abort["eventType"] == "ABORT"


@pytest.mark.parametrize("setting", [None, {"OPENLINEAGE_DISABLED": "true"}])
def test_off_unless_configured(
    start_simulator: StartSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setting: dict[str, str] | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver = Receiver().start()
    monkeypatch.chdir(tmp_path)  # no openlineage.yml here
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    for name, value in (setting or {}).items():
        monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
        monkeypatch.setenv(name, value)
    registry = start_simulator(orgs=1, models_per_org=1, versions_shape="objects")
    summary = extract(configured(registry, tmp_path), DAY, allow_backdate=True)
    receiver.stop()
    assert summary.exit_code == ExitCode.OK
    assert receiver.events == []
    assert capsys.readouterr().out == ""  # the client's console fallback never prints


def test_a_failing_backend_never_fails_the_run_and_is_logged_once(
    start_simulator: StartSimulator,
    tmp_path: Path,
    backend: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend.status = 400  # refused (not retried by the client)
    registry = start_simulator(orgs=1, models_per_org=2, versions_shape="objects")
    with caplog.at_level(logging.DEBUG, logger="connector"):
        summary = extract(configured(registry, tmp_path), DAY, allow_backdate=True)
    assert summary.exit_code == ExitCode.OK and summary.published
    assert len(backend.events) == 2  # both were tried
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "lineage" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "could not emit the START event" in warnings[0].getMessage()
    assert "400" in warnings[0].getMessage() and TOKEN not in caplog.text


def test_a_parent_that_is_not_one_is_refused_before_the_run() -> None:
    with pytest.raises(ConfigError, match="namespace/job/run-uuid"):
        lineage.observed(None, None, lambda: None, parent="airflow/not-a-run")  # type: ignore[arg-type]
    assert lineage.RunRef.parse("s3://bucket/a.b/" + str(uuid.UUID(int=1)), "x") == lineage.RunRef(
        "s3://bucket", "a.b", str(uuid.UUID(int=1))
    )


@pytest.mark.parametrize(
    "checks",
    [
        [
            {"name": "row_count", "verdict": "pass", "value": 0.02, "threshold": 0.1},
            {"name": "coverage", "verdict": "fail", "value": 3, "threshold": 0},
        ],
        {
            "row_count": {"passed": True, "value": 0.02, "threshold": 0.1},
            "coverage": {"passed": False, "value": 3, "threshold": 0},
        },
    ],
)
def test_check_results_become_data_quality_assertions(checks: Any) -> None:
    """Pure mapping of the check step's results (a summary field where the check step exists),
    in either shape, to assertions."""
    summary = SimpleNamespace(to_dict=lambda: {"checks": checks})
    found = lineage._assertions(summary)  # type: ignore[arg-type]
    assert [(a["assertion"], a["success"], a["actual"], a["expected"]) for a in found] == [
        ("row_count", True, "0.02", "0.1"),
        ("coverage", False, "3", "0"),
    ]
    assert lineage._assertions(SimpleNamespace(to_dict=dict)) == []  # type: ignore[arg-type]
