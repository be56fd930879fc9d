"""Failure handling end to end: isolation, auth blocking, 426, the publish guard, rejected
payloads, chaos, output failures and secrets, each against the simulator on a real socket."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from ground_truth import DAY1, dataset_rows, expected, project
from helpers import TOKEN, Hostile, ScriptedServer, config_document, file_hashes, write_config

from connector import extract
from connector.cli import main
from connector.config import parse_config
from connector.credentials import CREDENTIAL_HEADERS
from connector.dataset.datafile import DataFileWriter
from connector.dataset.localstore import LocalStore
from connector.errors import ErrorType, ExitCode, OutputError
from connector.extraction import target as target_module
from connector.simulator.faults import Reply
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
VOCABULARY = {member.value for member in ErrorType}


def error_types_in(document: Any) -> list[Any]:
    """Every `error_type` value anywhere in a JSON document (failures, rejected files)."""
    if isinstance(document, dict):
        found = [document["error_type"]] if "error_type" in document else []
        return found + [t for value in document.values() for t in error_types_in(value)]
    if isinstance(document, list):
        return [t for item in document for t in error_types_in(item)]
    return []


@pytest.fixture(autouse=True)
def error_types_are_the_connectors_own(tmp_path: Path) -> Iterator[None]:
    """After each test here, every error_type its runs wrote (manifests, run records,
    `_rejected/` files, staged shards) is a word of the connector's vocabulary."""
    yield
    for path in tmp_path.rglob("*.json"):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # e.g. a file a test planted on purpose
        unknown = [t for t in error_types_in(document) if t not in VOCABULARY]
        assert not unknown, f"{path}: error_type {unknown} is not in ErrorType"


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", DAY1, "--allow-backdate", *args]
    )


def partition(out: Path) -> Path:
    return out / "model_versions" / f"snapshot_date={DAY1}"


def published_baseline(registry: SimulatedRegistry, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A good snapshot for DAY1, and its file hashes, to prove later runs leave it alone."""
    out = tmp_path / "out"
    config = write_config(tmp_path / "good.yaml", config_document(registry, out))
    assert run(config).exit_code == 0
    return out, file_hashes(partition(out))


def test_auth_failure_stops_calling_that_org(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=4, org_tokens={"org-01": "other-token"})
    document = config_document(
        registry,
        tmp_path / "out",
        registry_settings={"concurrency": 1},
        output_settings={"min_success_ratio": 0.5},
    )
    result = run(write_config(tmp_path / "c.yaml", document))
    assert result.exit_code == ExitCode.AUTH, result.output
    stats = registry.stats()
    org01_requests = sum(v for k, v in stats.by_target.items() if k.startswith("org-01/"))
    assert org01_requests == 1  # the first 401 stops the org: no hammering with a bad token
    manifest = json.loads((partition(tmp_path / "out") / "_manifest.json").read_text())
    failures = manifest["failures"]
    assert [f["status"] for f in failures] == [401, None, None, None]
    assert [f["error_type"] for f in failures] == ["authentication_error"] + ["skipped"] * 3
    assert {r["org"] for r in dataset_rows(tmp_path / "out")} == {"org-00"}


def test_forbidden_org_fails_only_that_org(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=2)
    registry.set_faults(FaultPlan(forbidden_orgs=frozenset({"org-00"})))
    document = config_document(
        registry,
        tmp_path / "out",
        registry_settings={"concurrency": 1},
        output_settings={"min_success_ratio": 0},
    )
    result = run(write_config(tmp_path / "c.yaml", document))
    assert result.exit_code == ExitCode.AUTH
    assert "HTTP 403 permission_error" in result.stdout
    assert {r["org"] for r in dataset_rows(tmp_path / "out")} == {"org-01"}


def test_upgrade_required_aborts_and_publishes_nothing(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(models_per_org=20)
    out, before = published_baseline(registry, tmp_path)
    registry.set_faults(FaultPlan(upgrade_required=True))
    registry.reset_stats()
    document = config_document(registry, out, registry_settings={"concurrency": 2})
    result = run(write_config(tmp_path / "c.yaml", document))
    assert result.exit_code == ExitCode.INCOMPATIBLE_API
    assert "no longer accepts this connector" in result.stdout
    assert "upgrade the connector: install a newer model-versions-connector" in result.stdout
    assert file_hashes(partition(out)) == before
    # the abort stops new calls: far fewer than the 40 targets were requested
    assert registry.stats().requests <= 4


def test_publish_guard_keeps_the_previous_snapshot_byte_identical(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=5)
    out, before = published_baseline(registry, tmp_path)
    broken = frozenset(f"org-00/model-{i:04d}" for i in range(5))
    registry.set_faults(FaultPlan(not_found=broken))
    config = write_config(tmp_path / "c.yaml", config_document(registry, out))
    result = run(config)
    assert result.exit_code == ExitCode.NOT_PUBLISHED, result.output
    assert "only 5 of 10 targets succeeded (50% < min_success_ratio 90%)" in result.stdout
    assert file_hashes(partition(out)) == before
    assert not list((out / "_staging").iterdir())

    lowered = run(config, "--min-success-ratio", "0.5")
    assert lowered.exit_code == ExitCode.PARTIAL
    assert file_hashes(partition(out)) != before


MALFORMED = {
    "invalid_json": "invalid_json",
    "html_200": "invalid_json",
    "empty_body": "invalid_json",
    "versions_not_list": "invalid_payload",
    "count_string": "invalid_payload",
    "count_negative": "invalid_payload",
    "bad_timestamp": "invalid_payload",
    "duplicate_versions": "duplicate_version",
    "missing_name": "invalid_payload",
    "wrong_type": "invalid_payload",
    "oversize": "payload_too_large",
    "drip": "timeout",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_bad_payload_fails_one_model_and_is_kept_for_inspection(
    kind: str, start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=10, versions_shape="objects")
    registry.set_faults(FaultPlan(malformed={"org-00/model-0003": kind}))
    out = tmp_path / "out"
    document = config_document(
        registry,
        out,
        registry_settings={
            "timeout_seconds": 0.5,
            "max_response_bytes": 1024 * 1024,
            "retry": {"max_attempts": 1},
        },
    )
    result = run(write_config(tmp_path / "c.yaml", document))
    assert result.exit_code == ExitCode.PARTIAL, result.output
    manifest = json.loads((partition(out) / "_manifest.json").read_text())
    [failure] = manifest["failures"]
    assert (failure["org"], failure["model"]) == ("org-00", "model-0003")
    assert failure["error_type"] == MALFORMED[kind]
    assert failure["detail"]
    rows = dataset_rows(out)
    assert "model-0003" not in {r["model"] for r in rows}
    good = [r for r in expected(registry, 1) if r["model"] != "model-0003"]
    assert project(rows) == project(good)
    rejected = out / "_rejected" / DAY1 / "org-00" / "model-0003.json"
    if kind in ("drip", "oversize"):
        return  # no complete body was accepted, so there is nothing to keep
    kept = json.loads(rejected.read_text())
    assert kept["error_type"] == MALFORMED[kind]
    assert kept["body_bytes"] == len(kept["body"].encode()) or kept["body_truncated"]


def test_error_answers_are_recorded_but_not_kept_under_rejected(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    """`_rejected/` holds what its name says, 2xx bodies that failed validation; a 400, 404,
    409 or 422 is a failure record (status, error_type, the server's type and detail) only."""
    registry = start_simulator(orgs=1, models_per_org=6, versions_shape="objects")
    statuses = {"model-0001": 400, "model-0002": 404, "model-0003": 409, "model-0004": 422}
    registry.set_faults(
        FaultPlan(
            status_for={f"org-00/{model}": status for model, status in statuses.items()},
            malformed={"org-00/model-0005": "invalid_json"},
        )
    )
    out = tmp_path / "out"
    document = config_document(registry, out, output_settings={"min_success_ratio": 0})
    result = run(write_config(tmp_path / "c.yaml", document))
    assert result.exit_code == ExitCode.PARTIAL, result.output
    manifest = json.loads((partition(out) / "_manifest.json").read_text())
    by_model = {f["model"]: f for f in manifest["failures"]}
    assert {m: (f["status"], f["error_type"]) for m, f in by_model.items()} == {
        "model-0001": (400, "bad_request"),
        "model-0002": (404, "not_found"),
        "model-0003": (409, "conflict"),
        "model-0004": (422, "validation_error"),
        "model-0005": (200, "invalid_json"),
    }
    assert [by_model[m]["server_error_type"] for m in statuses] == [
        "bad_request_error",
        "not_found_error",
        "conflict_error",
        "validation_error",
    ]
    assert by_model["model-0002"]["detail"] == "Simulated HTTP 404 for org-00/model-0002"
    assert by_model["model-0004"]["attempts"] == 1
    kept = sorted(p.name for p in (out / "_rejected" / DAY1 / "org-00").iterdir())
    assert kept == ["model-0005.json"]
    assert manifest_rejected_dir(result) == str(out / "_rejected" / DAY1)


def manifest_rejected_dir(result: Result) -> str:
    """The text summary's `rejected payloads kept in ...` line."""
    [line] = [line for line in result.stdout.splitlines() if "rejected payloads kept in" in line]
    return line.split("rejected payloads kept in ", 1)[1].strip()


def test_only_error_answers_leave_no_rejected_directory(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3)
    registry.set_faults(FaultPlan(status_for={"org-00/model-0001": 400}))
    out = tmp_path / "out"
    document = config_document(registry, out, output_settings={"min_success_ratio": 0})
    result = run(write_config(tmp_path / "c.yaml", document))
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "HTTP 400 bad_request" in result.stdout
    assert not (out / "_rejected").exists()
    assert "rejected payloads kept in" not in result.stdout


@pytest.mark.slow
def test_chaos_run_equals_ground_truth(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=3, models_per_org=20, versions_shape="mixed", seed=7)
    registry.set_faults(
        FaultPlan(
            seed=11,
            rate_5xx=0.2,
            html_5xx_fraction=0.5,
            rate_429=0.05,
            retry_after="0",
            rate_reset=0.02,
        )
    )
    out = tmp_path / "out"
    document = config_document(
        registry,
        out,
        registry_settings={
            "concurrency": 8,
            "retry": {
                "max_attempts": 10,
                "backoff_base_seconds": 0.01,
                "backoff_max_seconds": 0.05,
            },
        },
    )
    result = run(write_config(tmp_path / "c.yaml", document), "--summary-format", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["targets"] == {"attempted": 60, "succeeded": 60, "failed": 0}
    assert sum(summary["requests"].values()) > 60  # faults were injected and retried
    assert project(dataset_rows(out)) == project(expected(registry, 1))


def test_output_failure_during_publish_keeps_previous_partition(
    start_simulator: StartSimulator,
    tmp_path: Path,
    token_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = start_simulator()
    out, before = published_baseline(registry, tmp_path)

    def disk_full(self: LocalStore, source: str, target: str) -> None:
        raise OutputError(f"cannot move to {target}: No space left on device")

    monkeypatch.setattr(LocalStore, "move", disk_full)
    config = parse_config(config_document(registry, out), env={"MODEL_REGISTRY_TOKEN": TOKEN})
    summary = extract(config, date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.OUTPUT
    assert "No space left on device" in (summary.message or "")
    assert not summary.published
    assert file_hashes(partition(out)) == before
    assert not list((out / "_staging").iterdir())


def test_unusable_output_location_exits_with_output_code(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = write_config(tmp_path / "c.yaml", config_document(registry, blocker / "out"))
    result = run(config)
    assert result.exit_code == ExitCode.OUTPUT
    assert result.stderr.startswith("Error: cannot create the output directory")


def test_token_never_appears_in_any_output(
    start_simulator: StartSimulator,
    tmp_path: Path,
    token_env: str,
) -> None:
    registry = start_simulator(orgs=2, models_per_org=5, org_tokens={"org-01": "nope"})
    registry.set_faults(
        FaultPlan(
            rate_5xx=0.3,
            html_5xx_fraction=0.5,
            malformed={"org-00/model-0001": "html_200", "org-00/model-0002": "invalid_json"},
            status_for={"org-00/model-0003": 422},
        )
    )
    out = tmp_path / "out"
    metrics = tmp_path / "m.prom"
    document = config_document(registry, out, output_settings={"min_success_ratio": 0})
    config = write_config(tmp_path / "c.yaml", document)
    for log_format in ("text", "json"):
        result = run(
            config,
            "--log-format",
            log_format,
            "--log-level",
            "DEBUG",
            "--summary-format",
            "json",
            "--metrics-file",
            str(metrics),
        )
        assert result.exit_code == ExitCode.AUTH
        assert TOKEN not in result.stdout
        # The CLI's log handler writes to stderr (the connector logger does not propagate, so
        # caplog would see nothing): the failure lines must be there for this check to count.
        assert "org-00/model-0003" in result.stderr and "validation_error" in result.stderr
        assert TOKEN not in result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert any("_rejected" in str(p) for p in written)
    assert any(p.name == "_manifest.json" for p in written)
    for path in written:
        if path.name == "c.yaml":
            continue
        assert TOKEN not in path.read_text(errors="replace"), path
    for parquet in out.rglob("*.parquet"):
        assert TOKEN.encode() not in parquet.read_bytes()
    logging.getLogger("connector").handlers.clear()


@pytest.mark.parametrize("scheme", ["bearer", "api-key"])
def test_token_echoed_by_a_server_is_scrubbed_everywhere(
    scheme: str, tmp_path: Path, token_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy's debug page answering 200 and quoting the request headers, whichever header
    carried the token: the body kept in `_rejected/` and every log line are scrubbed."""
    page = Hostile(
        Reply(200, b"<html>Access check</html>", content_type="text/html"),
        echo_credentials=True,
    )
    with ScriptedServer([page]) as server:
        document = {
            "registry": {
                "base_url": server.url,
                "token": "${MODEL_REGISTRY_TOKEN}",
                "auth_scheme": scheme,
            },
            "orgs": [{"name": "acme", "models": ["a", "b"]}],
            "output": {"uri": str(tmp_path / "out"), "min_success_ratio": 0},
        }
        summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    header = "X-API-Key" if scheme == "api-key" else "Authorization"
    assert {name for name in server.requests[0] if name in CREDENTIAL_HEADERS} == {header}
    assert summary.exit_code == ExitCode.PARTIAL
    assert f"{header}: " in summary.failures[0].detail
    assert "[REDACTED]" in summary.failures[0].detail
    kept = [p.read_text() for p in (tmp_path / "out" / "_rejected").rglob("*.json")]
    assert kept and all(f"{header}: " in text and "[REDACTED]" in text for text in kept)
    texts = [json.dumps(summary.to_dict()), summary.render_text()]
    logged = [r.getMessage() for r in caplog.records]
    # The library configures no handler, so records reach caplog: the echoed token was logged,
    # scrubbed, in the target's failure line.
    assert any("acme/" in text and "[REDACTED]" in text for text in logged)
    texts += logged
    texts += [p.read_text() for p in (tmp_path / "out").rglob("*.json")]
    assert all(TOKEN not in text for text in texts)


def test_an_unexpected_error_in_one_target_fails_only_that_target(
    start_simulator: StartSimulator,
    tmp_path: Path,
    token_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = start_simulator(orgs=1, models_per_org=10)
    real_parse = target_module.parse_versions

    def buggy(payload: Any, *, org: str, model: str, extracted_at: int, body: bytes) -> Any:
        if model == "model-0004":
            raise KeyError("a bug")
        return real_parse(payload, org=org, model=model, extracted_at=extracted_at, body=body)

    monkeypatch.setattr(target_module, "parse_versions", buggy)
    config = parse_config(config_document(registry, tmp_path / "out"))
    summary = extract(config, date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.PARTIAL
    [failure] = summary.failures
    assert (failure.model, failure.error_type) == ("model-0004", "internal_error")
    assert "unexpected KeyError" in failure.detail
    assert summary.targets_succeeded == 9


def test_failing_to_keep_a_rejected_payload_does_not_stop_the_run(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=10)
    registry.set_faults(FaultPlan(malformed={"org-00/model-0002": "invalid_json"}))
    out = tmp_path / "out"
    (out / "_rejected").mkdir(parents=True)
    # `_rejected` itself of the wrong type is refused before the run (test_layout.py)
    (out / "_rejected" / "2026-01-01").write_text("a file where a directory should be")
    summary = extract(
        parse_config(config_document(registry, out)), date(2026, 1, 1), allow_backdate=True
    )
    assert summary.exit_code == ExitCode.PARTIAL
    assert summary.published
    assert summary.failures[0].error_type == "invalid_json"


def test_upgrade_required_lists_every_target_as_failed(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(models_per_org=20)
    registry.set_faults(FaultPlan(upgrade_required=True))
    document = config_document(registry, tmp_path / "out", registry_settings={"concurrency": 2})
    summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.INCOMPATIBLE_API
    assert summary.targets_failed == 40
    assert len(summary.failures) == 40
    assert {f.error_type for f in summary.failures} <= {"upgrade_required", "skipped"}


def test_auth_blocking_holds_under_concurrency(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(
        orgs=1, models_per_org=40, org_tokens={"org-00": "other"}, latency_seconds=0.02
    )
    document = config_document(registry, tmp_path / "out", registry_settings={"concurrency": 4})
    summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.AUTH
    unauthorized = registry.stats().by_status.get(401, 0)
    assert 1 <= unauthorized <= 4  # only the requests already in flight when the first 401 came
    assert sum(f.error_type == "skipped" for f in summary.failures) == 40 - unauthorized


def test_output_override_is_validated_like_the_config(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator()
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    result = run(config, "--output", "gs://bucket/prefix")
    assert result.exit_code == ExitCode.CONFIG
    assert "output.uri: only local paths, file:// and s3:// URIs are supported" in result.stderr
    assert registry.stats().requests == 0


def test_report_with_config_needs_no_registry_token(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = start_simulator()
    config = write_config(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))
    for day in (1, 2):
        registry.set_day(day)
        result = CliRunner().invoke(
            main,
            ["extract", "--config", str(config), "--date", f"2026-01-0{day}", "--allow-backdate"],
        )
        assert result.exit_code == 0
    monkeypatch.delenv("MODEL_REGISTRY_TOKEN")
    report = CliRunner().invoke(main, ["report", "--config", str(config), "--format", "json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)


def test_an_output_failure_stops_retries_in_flight(
    start_simulator: StartSimulator,
    tmp_path: Path,
    token_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer fails on the first rows; targets still retrying a 503 must give up, not
    sleep out a 30-second Retry-After for a run that is already lost."""
    registry = start_simulator(orgs=1, models_per_org=6)
    registry.set_faults(FaultPlan(status_for={f"org-00/model-000{i}": 503 for i in range(1, 6)}))

    def disk_full(self: DataFileWriter, rows: list[Any]) -> None:
        raise OutputError("cannot write Parquet: No space left on device")

    monkeypatch.setattr(DataFileWriter, "add_rows", disk_full)
    document = config_document(
        registry,
        tmp_path / "out",
        registry_settings={
            "concurrency": 6,
            "retry": {"max_attempts": 10, "backoff_base_seconds": 30, "backoff_max_seconds": 30},
        },
    )
    started = time.monotonic()
    summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.OUTPUT
    assert time.monotonic() - started < 10  # not 30 s of backoff per target
    assert summary.targets_attempted == 6


def test_an_org_out_of_credits_is_called_once_and_fails_its_targets(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    """A 429 saying credits ran out is not retried, and the org is not called again: its
    targets fail as insufficient_credits (the first) and skipped (the rest). Not an auth
    problem: no exit 4; the publish guard decides (here 2 of 6 targets failed: exit 8)."""
    registry = start_simulator(orgs=2, models_per_org=3)
    registry.set_faults(FaultPlan(out_of_credits_orgs=frozenset({"org-01"})))
    document = config_document(registry, tmp_path / "out", registry_settings={"concurrency": 1})
    summary = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.NOT_PUBLISHED
    stats = registry.stats()
    assert stats.by_status[429] == 1  # answered once, never retried
    assert stats.by_target.get("org-01/model-0001") is None
    failed = {f.model: f for f in summary.failures}
    assert [f.org for f in summary.failures] == ["org-01"] * 3
    assert failed["model-0000"].error_type == "insufficient_credits"
    assert "out of credits" in failed["model-0000"].message
    assert {failed[m].error_type for m in ("model-0001", "model-0002")} == {"skipped"}
    assert "org 'org-01' is out of credits" in failed["model-0001"].detail
    document["output"]["min_success_ratio"] = 0.5
    published = extract(parse_config(document), date(2026, 1, 1), allow_backdate=True)
    assert published.exit_code == ExitCode.PARTIAL and published.published
