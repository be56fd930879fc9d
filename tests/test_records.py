"""Every run that gets the output lock leaves `<output>/_runs/<date>/<run_id>.json`, published or
not: the summary with every failure and the settings without secrets; the newest N are kept."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import TOKEN, config_document, write_config

from connector.cli import main
from connector.config import parse_config
from connector.dataset.localstore import LocalStore
from connector.errors import ExitCode, TargetError
from connector.extraction.records import RUNS_DIR, prune_run_records, run_settings, write_run_record
from connector.extraction.run import extract
from connector.extraction.summary import RunSummary
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY = "2026-01-01"
ORG_TOKEN = "org-token-77d1-secret"


def test_a_run_that_publishes_nothing_leaves_a_record_with_every_failure(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=1, models_per_org=30)
    missing = frozenset(f"org-00/model-{i:04d}" for i in range(20))
    registry.set_faults(FaultPlan(not_found=missing))
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.yaml", config_document(registry, out))
    result = CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", DAY, "--allow-backdate"]
    )
    assert result.exit_code == ExitCode.NOT_PUBLISHED, result.output
    assert not (out / "model_versions").exists()
    [record] = (out / RUNS_DIR / DAY).glob("*.json")
    # the text summary points at the record, where the 10 failures it does not show are
    assert f"and 10 more failure(s), listed in {record}" in result.stdout
    assert f"record    {record}" in result.stdout
    saved = json.loads(record.read_text())
    assert saved["outcome"] == "not_published" and saved["exit_code"] == 8
    assert saved["published"] is False
    assert sorted(f"{f['org']}/{f['model']}" for f in saved["failures"]) == sorted(missing)
    assert saved["settings"]["orgs"][0]["models"][0] == "model-0000"
    assert saved["settings"]["overrides"]["date"] == DAY
    assert TOKEN not in record.read_text()


def test_published_and_refused_runs_each_leave_one_and_only_the_newest_are_kept(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=2)
    out = tmp_path / "out"
    document = config_document(registry, out, output_settings={"keep_run_records": 3})
    config = parse_config(document, env={"MODEL_REGISTRY_TOKEN": TOKEN})
    run_ids = []
    for day in (1, 2, 3, 4):
        summary = extract(config, date(2026, 1, day), allow_backdate=True)
        assert summary.exit_code == ExitCode.OK and summary.record is not None
        assert Path(summary.record) == out / RUNS_DIR / f"2026-01-0{day}" / f"{summary.run_id}.json"
        run_ids.append(summary.run_id)
    kept = sorted(p.stem for p in (out / RUNS_DIR).glob("*/*.json"))
    assert kept == sorted(run_ids[1:])
    assert not (out / RUNS_DIR / "2026-01-01").exists()  # emptied date directories go too


def test_settings_hold_no_secret(tmp_path: Path) -> None:
    document = {
        "registry": {
            "base_url": "http://127.0.0.1:1",
            "token": "${MODEL_REGISTRY_TOKEN}",
            "proxy": "http://user:pw-secret@proxy.example:3128",
        },
        "orgs": [
            {"name": "acme", "models": ["m"], "token": ORG_TOKEN},
            {"name": "b", "models": ["x"]},
        ],
        "output": {"uri": str(tmp_path)},
    }
    config = parse_config(document, env={"MODEL_REGISTRY_TOKEN": TOKEN})
    text = json.dumps(run_settings(config, replace=False))
    for secret in (TOKEN, ORG_TOKEN, "pw-secret", "user:"):
        assert secret not in text
    settings = run_settings(config)
    assert settings["registry"]["proxy"] == "http://***@proxy.example:3128"
    assert settings["org_tokens"] == ["acme"]


def test_the_writer_can_record_another_outcome_and_scrubs_secrets(tmp_path: Path) -> None:
    """What a signal handler calls: the summary as it stands, and the outcome it knows."""
    failure = TargetError(f"echo {TOKEN}", org="o", model="m").failure()  # not redacted yet
    summary = RunSummary(
        run_id="abc",
        snapshot_date=DAY,
        output_uri=str(tmp_path),
        started_at="",
        failures=(failure,),
    )
    shown = write_run_record(
        LocalStore(tmp_path), summary, {"x": 1}, keep=5, secrets=[TOKEN], outcome="interrupted"
    )
    path = tmp_path / RUNS_DIR / DAY / "abc.json"
    assert shown == str(path)
    saved = json.loads(path.read_text())
    assert saved["record"] == str(path)
    assert saved["outcome"] == "interrupted" and saved["settings"] == {"x": 1}
    assert TOKEN not in path.read_text() and "[REDACTED]" in path.read_text()


def test_a_record_that_cannot_be_written_does_not_change_the_outcome(
    start_simulator: StartSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = start_simulator(orgs=1, models_per_org=2)
    out = tmp_path / "out"
    (out / RUNS_DIR).mkdir(parents=True)
    # `_runs` itself of the wrong type is refused before the run (test_layout.py)
    (out / RUNS_DIR / "2026-01-01").write_text("a file where the directory should be")
    config = parse_config(config_document(registry, out), env={"MODEL_REGISTRY_TOKEN": TOKEN})
    with caplog.at_level(logging.WARNING, logger="connector"):
        summary = extract(config, date(2026, 1, 1), allow_backdate=True)
    assert summary.exit_code == ExitCode.OK and summary.published
    assert summary.record is None
    assert "could not write the run record" in caplog.text
    assert "record " not in summary.render_text()


def test_pruning_keeps_the_newest_by_modification_time(tmp_path: Path) -> None:
    runs = tmp_path / RUNS_DIR
    for index, name in enumerate(["c", "a", "b"]):
        path = runs / f"2026-01-0{index + 1}" / f"{name}.json"
        path.parent.mkdir(parents=True)
        path.write_text("{}")
        os.utime(path, ns=(10**18 + index, 10**18 + index))
    removed = prune_run_records(LocalStore(tmp_path), keep=2)
    assert removed == [f"{RUNS_DIR}/2026-01-01/c.json"]
    assert sorted(p.stem for p in runs.glob("*/*.json")) == ["a", "b"]
