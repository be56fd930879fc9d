"""`connector accept` and `connector discard` on each store: a person's decision on a held day,
under the output lock, with a run record; refused clearly when it is not clear which day."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from held_runs import DROPPED_ORG, config_for, held_data
from helpers import TOKEN, config_document, write_config
from s3_objects import DAY1, DAY2
from stores import copy_tree, tree

from connector import accept, discard, extract
from connector.cli import main
from connector.config import Config
from connector.dataset.layout import LOCK_NAME
from connector.dataset.locate import open_store
from connector.dataset.reader import read_manifest
from connector.dataset.store import Store
from connector.errors import ConfigError, ExitCode, LockHeldError
from connector.simulator.server import SimulatedRegistry, SimulatorConfig

StartSimulator = Callable[..., SimulatedRegistry]


@pytest.fixture(scope="module")
def built(
    shared_store: Callable[[], AbstractContextManager[Store]],
) -> Iterator[tuple[SimulatedRegistry, str, list[str]]]:
    """Day 1 published; day 2 held twice (two runs with an org dropped): built once per kind
    of store, each test deciding on a copy of its own (`held_twice`). The simulator stays up
    for a test that runs again."""
    registry = SimulatedRegistry(SimulatorConfig(token=TOKEN, orgs=2, models_per_org=2)).start()
    with shared_store() as store:
        assert extract(config_for(registry, store), DAY1, allow_backdate=True).exit_code == 0
        narrowed = config_for(registry, store, drop_org=DROPPED_ORG)
        runs = [extract(narrowed, DAY2, allow_backdate=True) for _ in range(2)]
    assert [run.exit_code for run in runs] == [ExitCode.HELD, ExitCode.HELD]
    yield registry, store.uri, [run.run_id for run in runs]
    registry.stop()


@pytest.fixture
def held_twice(
    built: tuple[SimulatedRegistry, str, list[str]], fresh_store: Store
) -> tuple[SimulatedRegistry, Store, Config, list[str]]:
    """A copy of the module's held day in a store of this test: the simulator, the store, the
    narrowed config and the two held runs."""
    registry, uri, runs = built
    copy_tree(open_store(uri), fresh_store)
    return registry, fresh_store, config_for(registry, fresh_store, drop_org=DROPPED_ORG), runs


def test_discard_removes_one_held_day_and_nothing_else(held_twice: Any) -> None:
    _, store, config, (first, second) = held_twice
    published = tree(store, "model_versions")
    with pytest.raises(ConfigError, match="2 snapshots of 2026-01-02 are held") as caught:
        accept(config, DAY2)
    assert first in str(caught.value) and second in str(caught.value)

    summary = discard(config, DAY2, first)
    assert summary.exit_code == ExitCode.OK and not summary.published
    assert f"discarded the held snapshot of 2026-01-02 (run {first}" in (summary.message or "")
    assert "coverage_config 2 > 0" in (summary.message or "")
    assert store.info(held_data(DAY2, first)) is None
    assert store.info(held_data(DAY2, second)) is not None
    assert tree(store, "model_versions") == published
    record = json.loads(store.get(f"_runs/2026-01-02/{summary.run_id}.json") or b"")
    assert record["outcome"] == "discarded" and record["settings"]["overrides"]["run"] == first

    accepted = accept(config, DAY2)  # one left: no --run needed
    assert accepted.exit_code == ExitCode.OK
    assert (read_manifest(store, DAY2) or {})["run_id"] == second
    assert tree(store, "_held") == {}
    with pytest.raises(ConfigError, match="no snapshot of 2026-01-02 is held"):
        discard(config, DAY2, second)


def test_a_run_that_is_not_held_is_refused_naming_those_that_are(
    start_simulator: StartSimulator,
    tmp_path: Path,
    token_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = start_simulator(orgs=2, models_per_org=2)
    out = tmp_path / "out"
    full = write_config(tmp_path / "full.yaml", config_document(registry, out))
    document = config_document(registry, out)
    document["orgs"] = [org for org in document["orgs"] if org["name"] != DROPPED_ORG]
    narrowed = write_config(tmp_path / "narrowed.yaml", document)

    none = CliRunner().invoke(main, ["accept", "--config", str(full), "--date", "2026-01-02"])
    assert none.exit_code == ExitCode.CONFIG
    assert "Error: 1 configuration problem(s):\n  no snapshot of 2026-01-02 is held" in none.stderr
    for config, day in ((full, "2026-01-01"), (narrowed, "2026-01-02")):
        run = CliRunner().invoke(
            main, ["extract", "--config", str(config), "--date", day, "--allow-backdate"]
        )
        assert run.exit_code in (0, 10), run.output
    assert run.exit_code == ExitCode.HELD
    held = tree_of(out)
    wrong = CliRunner().invoke(
        main, ["discard", "--config", str(full), "--date", "2026-01-02", "--run", "f00"]
    )
    assert wrong.exit_code == ExitCode.CONFIG
    assert "run f00 of 2026-01-02 is not held; held: " in wrong.stderr
    assert tree_of(out) == held
    missing_run = CliRunner().invoke(
        main, ["discard", "--config", str(full), "--date", "2026-01-02"]
    )
    assert missing_run.exit_code == 2 and "Missing option '--run'" in missing_run.stderr

    # A decision never calls the registry: the extractor's token need not be set for it, but
    # any other variable the config uses must be.
    monkeypatch.delenv("MODEL_REGISTRY_TOKEN")
    unset_out = {**config_document(registry, out), "output": {"uri": "${HELD_OUTPUT_DIR}"}}
    unset = write_config(tmp_path / "unset.yaml", unset_out)
    refused = CliRunner().invoke(main, ["accept", "--config", str(unset), "--date", "2026-01-02"])
    assert refused.exit_code == ExitCode.CONFIG
    assert "output.uri: environment variable HELD_OUTPUT_DIR is not set" in refused.stderr
    assert "MODEL_REGISTRY_TOKEN" not in refused.stderr and tree_of(out) == held
    accepted = CliRunner().invoke(main, ["accept", "--config", str(full), "--date", "2026-01-02"])
    assert accepted.exit_code == ExitCode.OK, accepted.output


def tree_of(out: Path) -> dict[str, bytes]:
    """Every file of the output but the lock (which names its last holder)."""
    files = (p for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME)
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def test_a_decision_waits_for_no_one_else_holding_the_output(held_twice: Any) -> None:
    _, store, config, (first, _) = held_twice
    with store.lock(LOCK_NAME, "another-run"):
        with pytest.raises(LockHeldError):
            accept(config, DAY2, first)
        with pytest.raises(LockHeldError):
            discard(config, DAY2, first)
    assert store.info(held_data(DAY2, first)) is not None


def test_a_held_file_that_is_not_what_its_manifest_says_is_never_published(held_twice: Any) -> None:
    _, store, config, (first, second) = held_twice
    store.copy(held_data(DAY2, second), held_data(DAY2, first))  # another run's observation
    published = tree(store, "model_versions")
    summary = accept(config, DAY2, first)
    assert summary.exit_code == ExitCode.OUTPUT and not summary.published
    assert f"of run {second}, its manifest says" in (summary.message or "")
    assert tree(store, "model_versions") == published
    assert store.info(held_data(DAY2, first)) is not None  # kept for a person to look at
    record = json.loads(store.get(f"_runs/2026-01-02/{summary.run_id}.json") or b"")
    assert record["outcome"] == "output"


def test_a_held_day_whose_data_is_gone_says_how_to_clear_it(held_twice: Any) -> None:
    _, store, config, (first, _) = held_twice
    store.delete(held_data(DAY2, first))
    summary = accept(config, DAY2, first)
    assert summary.exit_code == ExitCode.OUTPUT
    assert "is missing: was the day accepted already" in (summary.message or "")
    assert discard(config, DAY2, first).exit_code == ExitCode.OK


def test_accept_replaces_a_snapshot_published_since_and_names_its_run(held_twice: Any) -> None:
    registry, store, config, (first, _) = held_twice
    rerun = extract(config_for(registry, store), DAY2, allow_backdate=True)
    assert rerun.exit_code == ExitCode.OK
    accepted = accept(config, DAY2, first)
    assert accepted.exit_code == ExitCode.OK
    assert (read_manifest(store, DAY2) or {})["run_id"] == first
    assert f"it replaced the snapshot of run {rerun.run_id}" in (accepted.message or "")
