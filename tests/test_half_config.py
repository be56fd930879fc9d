"""The half-config guard, end to end: a run that leaves out models the date's published partition
holds publishes nothing (exit 8), names them, calls nothing, and leaves the partition
byte-identical; `--replace` replaces it on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from helpers import config_document, write_config

from connector.cli import main
from connector.errors import ExitCode
from connector.extraction.guards import describe_missing, missing_targets
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY = "2026-01-01"


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", DAY, "--allow-backdate", *args]
    )


def partition_bytes(out: Path) -> dict[str, bytes]:
    directory = out / "model_versions" / f"snapshot_date={DAY}"
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def orgs_of(registry: SimulatedRegistry, keep: Callable[[str, str], bool]) -> list[dict[str, Any]]:
    by_org: dict[str, list[str]] = {}
    for org, model in registry.targets():
        if keep(org, model):
            by_org.setdefault(org, []).append(model)
    return [{"name": org, "models": models} for org, models in by_org.items()]


def test_half_the_orgs_do_not_replace_the_partition(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=4)
    out = tmp_path / "out"
    full = write_config(tmp_path / "full.yaml", config_document(registry, out))
    assert run(full).exit_code == 0
    before = partition_bytes(out)
    registry.set_day(3)  # counts moved on: any replacement would change the bytes
    registry.reset_stats()

    half_document = config_document(
        registry, out, orgs=orgs_of(registry, lambda o, _: o == "org-00")
    )
    half = write_config(tmp_path / "half.yaml", half_document)
    refused = run(half)
    assert refused.exit_code == ExitCode.NOT_PUBLISHED, refused.output
    assert "4 model(s) this run does not target" in refused.stdout
    assert "org-01/model-0000" in refused.stdout and "--replace" in refused.stdout
    assert "org-01/model-0000" in refused.stderr  # the log line says it too
    assert partition_bytes(out) == before
    assert registry.stats().requests == 0  # refused before anything was called
    as_json = run(half, "--summary-format", "json")
    summary = json.loads(as_json.stdout)
    assert as_json.exit_code == ExitCode.NOT_PUBLISHED and partition_bytes(out) == before
    document = json.loads(Path(summary["record"]).read_text())
    assert Path(summary["record"]) == out / "_runs" / DAY / f"{summary['run_id']}.json"
    assert document["outcome"] == "not_published"
    assert document["missing_targets"] == [f"org-01/model-000{i}" for i in range(4)]

    replaced = run(half, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert partition_bytes(out) != before
    manifest = json.loads(
        (out / "model_versions" / f"snapshot_date={DAY}/_manifest.json").read_text()
    )
    assert manifest["targets"]["attempted"] == 4


def test_a_run_with_more_targets_publishes(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> None:
    registry = start_simulator(orgs=2, models_per_org=2)
    out = tmp_path / "out"
    first = config_document(registry, out, orgs=orgs_of(registry, lambda o, _: o == "org-00"))
    assert run(write_config(tmp_path / "first.yaml", first)).exit_code == 0
    everything = write_config(tmp_path / "all.yaml", config_document(registry, out))
    assert run(everything).exit_code == 0


def test_the_refusal_names_the_first_few_and_counts_the_rest() -> None:
    existing = {("acme", f"m{i:02d}") for i in range(12)} | {("beta", "x")}
    missing = missing_targets(existing, [("acme", "m00"), ("beta", "x"), ("new", "y")])
    assert len(missing) == 11
    message = describe_missing(missing, date(2026, 1, 1))
    assert "11 model(s)" in message
    assert "acme/m01, acme/m02, acme/m03, acme/m04, acme/m05 and 6 more" in message
    assert "acme/m06" not in message
    assert missing_targets(existing, sorted(existing)) == []
