"""Sharded snapshots: `extract --shard K/N` stages, `publish --shards N` merges or refuses.

Everything runs the real CLI against the simulator on 127.0.0.1; the published dataset is read
back with DuckDB and compared with the simulator's ground truth.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from ground_truth import dataset_rows, expected, project
from helpers import TOKEN, config_document, file_hashes, write_config
from shard_runs import cli, extract_shard, publish

from connector.config import load_config
from connector.dataset import shards as staging
from connector.dataset.localstore import LocalStore
from connector.errors import ConfigError, ExitCode
from connector.extraction.sharding import fingerprint, parse_shard, select, shard_of
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY1 = "2026-01-01"
DAY = date(2026, 1, 1)


@pytest.fixture
def setup(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> tuple[SimulatedRegistry, Path, Path]:
    registry = start_simulator(orgs=2, models_per_org=6, versions_shape="objects")
    out = tmp_path / "out"
    return registry, out, write_config(tmp_path / "c.yaml", config_document(registry, out))


def partition(out: Path, day: str = DAY1) -> Path:
    return out / "model_versions" / f"snapshot_date={day}"


# --- which shard a target is in ----------------------------------------------------------------

TARGETS = [(f"org-{o}", f"model-{m:04d}") for o in range(3) for m in range(200)]


def test_shards_partition_the_targets() -> None:
    parts = [select(TARGETS, (index, 4)) for index in range(1, 5)]
    assert sorted(t for part in parts for t in part) == sorted(TARGETS)  # each target once
    assert all(parts)  # and no shard is left empty by a skewed hash


def test_a_targets_shard_does_not_depend_on_the_other_targets() -> None:
    """Discovery may add or drop models: the ones that stay keep their shard."""
    before = {t: shard_of(*t, 5) for t in TARGETS[:300]}
    grown = [("new-org", f"m{i}") for i in range(50)] + TARGETS[100:]
    after = {t: index for index in range(1, 6) for t in select(grown, (index, 5))}
    assert all(after[t] == before[t] for t in TARGETS[100:300])


def test_shard_of_is_the_same_in_every_process() -> None:
    """Python's hash() of a str changes with PYTHONHASHSEED; the shard must not. Two seeds and
    forty targets: a shard taken from hash() would differ for some of them (1 - 7**-40)."""
    targets = [("acme", f"model-{i}") for i in range(40)]
    code = (
        "import json, sys; from connector.extraction.sharding import shard_of; "
        "print(json.dumps([shard_of(org, model, 7) for org, model in json.loads(sys.argv[1])]))"
    )
    seen = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code, json.dumps(targets)],
                env={**os.environ, "PYTHONHASHSEED": seed},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for seed in ("1", "2")
    ]
    assert seen == [[shard_of(org, model, 7) for org, model in targets]] * 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0/3", "between 1 and N=3"),
        ("4/3", "between 1 and N=3"),
        ("2", "expected K/N"),
        ("a/b", "expected K/N"),
        ("1/0", "shard count must be 1 to"),
    ],
)
def test_a_bad_shard_is_a_usage_error(setup: Any, text: str, words: str) -> None:
    _, out, config = setup
    result = extract_shard(config, text)
    assert result.exit_code == 2
    assert words in result.output
    assert not out.exists()  # nothing was called or written
    with pytest.raises(ConfigError) as raised:
        parse_shard(text)
    assert words in str(raised.value)


def test_fingerprint_ignores_tokens_and_tuning_but_not_targets(
    setup: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, out, config_path = setup
    base = fingerprint(load_config(config_path), str(out))
    tuned = config_document(
        registry, out, registry_settings={"concurrency": 13, "max_requests_per_second": 7}
    )
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", "another-token")
    assert fingerprint(load_config(write_config(tmp_path / "t.yaml", tuned)), str(out)) == base
    fewer = config_document(registry, out, orgs=[{"name": "org-00", "models": ["model-0000"]}])
    assert fingerprint(load_config(write_config(tmp_path / "f.yaml", fewer)), str(out)) != base
    assert fingerprint(load_config(config_path), str(tmp_path / "elsewhere")) != base


# --- staging and publishing --------------------------------------------------------------------


def test_three_shards_publish_one_snapshot_equal_to_ground_truth(setup: Any) -> None:
    registry, out, config = setup
    staged = []
    for index in (1, 2, 3):
        result = extract_shard(config, f"{index}/3", "--summary-format", "json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["published"] is False
        assert summary["shard"] == f"{index}/3"
        staged.append(summary["targets"]["attempted"])
        assert not partition(out).exists()  # a shard never publishes
    assert sum(staged) == 12
    record = json.loads(((out / staging.part_path(DAY, 1, 3)) / staging.RECORD_NAME).read_text())
    assert TOKEN not in json.dumps(record)
    assert record["fingerprint"].startswith("sha256:")

    result = publish(config, 3)
    assert result.exit_code == 0, result.output
    assert "(from 3 shards)" in result.stdout
    assert project(dataset_rows(out)) == project(expected(registry, 1))
    manifest = json.loads((partition(out) / "_manifest.json").read_text())
    assert manifest["shards"] == 3
    assert manifest["targets"] == {"attempted": 12, "succeeded": 12, "failed": 0}
    assert manifest["requests"] == {"200": 12}
    assert not (out / staging.SHARDS_DIR).exists()  # the parts are gone once published


def test_failures_of_every_shard_land_in_one_manifest(setup: Any) -> None:
    registry, out, config = setup
    broken = ["org-00/model-0001", "org-01/model-0004"]
    assert len({shard_of(*key.split("/"), 2) for key in broken}) == 2  # one in each shard
    registry.set_faults(FaultPlan(not_found=frozenset(broken)))
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 3  # partial: staged anyway
    result = publish(config, 2, "--min-success-ratio", "0.8")
    assert result.exit_code == 3, result.output
    manifest = json.loads((partition(out) / "_manifest.json").read_text())
    assert [f"{f['org']}/{f['model']}" for f in manifest["failures"]] == broken
    assert manifest["targets"] == {"attempted": 12, "succeeded": 10, "failed": 2}
    want = [r for r in expected(registry, 1) if f"{r['org']}/{r['model']}" not in broken]
    assert project(dataset_rows(out)) == project(want)


def test_the_publish_guard_counts_all_shards_together(setup: Any) -> None:
    registry, out, config = setup
    # every model of one org fails: 50% of all targets, whatever shard each one is in
    registry.set_faults(FaultPlan(not_found=frozenset(f"org-00/model-{m:04d}" for m in range(6))))
    for index in (1, 2):
        extract_shard(config, f"{index}/2")
    result = publish(config, 2)
    assert result.exit_code == ExitCode.NOT_PUBLISHED, result.output
    assert "only 6 of 12 targets succeeded" in result.stdout
    assert not partition(out).exists()
    # the parts stay staged: re-run the shards once the registry is back, then publish
    registry.set_faults(FaultPlan())
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    assert publish(config, 2).exit_code == 0
    assert project(dataset_rows(out)) == project(expected(registry, 1))


def test_rerunning_a_shard_replaces_only_that_part(setup: Any) -> None:
    registry, out, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    other = file_hashes(out / staging.part_path(DAY, 2, 2))
    first = json.loads(((out / staging.part_path(DAY, 1, 2)) / staging.RECORD_NAME).read_text())
    registry.set_day(2)  # the registry moved on: shard 1 now fetches different counts
    assert extract_shard(config, "1/2").exit_code == 0
    assert file_hashes(out / staging.part_path(DAY, 2, 2)) == other
    again = json.loads(((out / staging.part_path(DAY, 1, 2)) / staging.RECORD_NAME).read_text())
    assert again["run_id"] != first["run_id"]
    assert sorted(p.name for p in (out / staging.part_path(DAY, 1, 2)).iterdir()) == sorted(
        [staging.RECORD_NAME, *again["files"]]
    )  # the earlier run's files are gone
    assert publish(config, 2).exit_code == 0
    rows = project(dataset_rows(out))
    shard1 = {t for t in registry.targets() if shard_of(*t, 2) == 1}
    day1, day2 = project(expected(registry, 1)), project(expected(registry, 2))
    want = [r for r in day2 if (r["org"], r["model"]) in shard1] + [
        r for r in day1 if (r["org"], r["model"]) not in shard1
    ]
    key = lambda r: (r["org"], r["model"], r["version"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(want, key=key)


def test_what_a_killed_shard_run_left_is_ignored_and_then_cleaned(setup: Any) -> None:
    registry, out, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    part = out / staging.part_path(DAY, 1, 2)
    listed = json.loads((part / staging.RECORD_NAME).read_text())["files"]
    # killed after writing a file, before committing its record; and killed mid-write
    shutil.copy(part / listed[0], part / "part-deadbeef0000-00000.parquet")
    (part / ".part-deadbeef0000-00001.parquet.0123abcd.tmp").write_bytes(b"PAR1")
    assert extract_shard(config, "1/2").exit_code == 0  # the next run of the shard cleans up
    record = json.loads((part / staging.RECORD_NAME).read_text())
    assert sorted(p.name for p in part.iterdir()) == sorted([staging.RECORD_NAME, *record["files"]])
    shutil.copy(part / record["files"][0], part / "part-orphan000000-00000.parquet")
    assert publish(config, 2).exit_code == 0
    assert project(dataset_rows(out)) == project(expected(registry, 1))  # no row twice


# --- refusals ----------------------------------------------------------------------------------


def test_a_missing_shard_is_refused_and_nothing_is_published(setup: Any) -> None:
    _, out, config = setup
    assert (
        cli("extract", "--config", str(config), "--date", DAY1, "--allow-backdate").exit_code == 0
    )
    before = file_hashes(partition(out))
    assert extract_shard(config, "1/3").exit_code == 0
    assert extract_shard(config, "3/3").exit_code == 0
    result = publish(config, 3)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE == 9
    assert "shard 2/3 is missing" in result.output
    assert "nothing was published" in result.output
    assert file_hashes(partition(out)) == before  # the previous snapshot is untouched
    assert (
        staging.read_part(LocalStore(out), DAY, 1, 3) is not None
    )  # and the staged parts are kept


def test_a_shard_count_that_was_never_staged_names_the_ones_that_were(setup: Any) -> None:
    _, _, config = setup
    for index in (1, 2):
        extract_shard(config, f"{index}/2")
    result = publish(config, 3)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "also staged for this date: 1-of-2, 2-of-2" in result.output


def test_a_shard_staged_with_another_config_is_stale(setup: Any, tmp_path: Path) -> None:
    registry, out, config = setup
    assert extract_shard(config, "1/2").exit_code == 0
    fewer = config_document(registry, out)
    fewer["orgs"][1]["models"] = fewer["orgs"][1]["models"][:3]
    other = write_config(tmp_path / "other.yaml", fewer)
    assert extract_shard(other, "2/2").exit_code == 0
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "shard 2/2 is stale: staged with another configuration" in result.output
    assert "shard 1/2" not in result.output
    assert not partition(out).exists()


def test_a_part_copied_from_another_date_is_stale(setup: Any) -> None:
    _, out, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2", day="2025-12-31").exit_code == 0
    assert extract_shard(config, "1/2").exit_code == 0
    shutil.copytree(
        (out / staging.part_path(date(2025, 12, 31), 2, 2)), (out / staging.part_path(DAY, 2, 2))
    )
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert f"shard 2/2 is stale: staged for 2025-12-31, not {DAY1}" in result.output


def test_a_duplicated_part_is_refused(setup: Any) -> None:
    _, out, config = setup
    assert extract_shard(config, "1/2").exit_code == 0
    shutil.copytree((out / staging.part_path(DAY, 1, 2)), (out / staging.part_path(DAY, 2, 2)))
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "shard 2/2 is duplicated" in result.output
    assert not partition(out).exists()


def test_targets_filed_under_the_wrong_shard_are_refused(setup: Any) -> None:
    _, out, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    path = (out / staging.part_path(DAY, 2, 2)) / staging.RECORD_NAME
    record = json.loads(path.read_text())
    stolen = json.loads(((out / staging.part_path(DAY, 1, 2)) / staging.RECORD_NAME).read_text())
    record["targets"].append(stolen["targets"][0])
    path.write_text(json.dumps(record))
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    org, model = stolen["targets"][0]
    assert f"it holds {org}/{model}, which belongs to shard 1/2" in result.output


def test_a_shard_in_progress_blocks_publish_and_a_second_run_of_it(setup: Any) -> None:
    _, out, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    with staging.shard_lock(LocalStore(out), DAY, 2, 2, "someone-else"):
        result = publish(config, 2)
        assert result.exit_code == ExitCode.LOCK_HELD
        assert "shard 2-of-2" in result.output and "(run someone-else)" in result.output
        again = extract_shard(config, "2/2")
        assert again.exit_code == ExitCode.LOCK_HELD
        assert extract_shard(config, "1/2").exit_code == 0  # other shards are not held up
    assert not partition(out).exists()
    assert publish(config, 2).exit_code == 0


def test_a_426_in_a_shard_unstages_it(setup: Any) -> None:
    registry, _, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    registry.set_faults(FaultPlan(upgrade_required=True))
    assert extract_shard(config, "2/2").exit_code == ExitCode.INCOMPATIBLE_API
    registry.set_faults(FaultPlan())
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "shard 2/2 is missing" in result.output


def test_the_half_config_guard_counts_all_shards_together(setup: Any, tmp_path: Path) -> None:
    registry, out, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    assert publish(config, 2).exit_code == 0
    before = file_hashes(partition(out))
    fewer = config_document(registry, out)
    fewer["orgs"][0]["models"].remove("model-0002")
    smaller = write_config(tmp_path / "fewer.yaml", fewer)
    for index in (1, 2):
        assert extract_shard(smaller, f"{index}/2").exit_code == 0
    result = publish(smaller, 2, "--summary-format", "json")
    assert result.exit_code == ExitCode.NOT_PUBLISHED, result.output
    assert json.loads(result.stdout)["missing_targets"] == ["org-00/model-0002"]
    assert file_hashes(partition(out)) == before
    assert json.loads(result.stdout)["record"]  # the refused publish left its run record
    assert publish(smaller, 2, "--replace").exit_code == 0
    assert {r["model"] for r in dataset_rows(out) if r["org"] == "org-00"} == {
        f"model-{m:04d}" for m in (0, 1, 3, 4, 5)
    }


def test_shards_obey_the_snapshot_date_guard(setup: Any) -> None:
    _, out, config = setup
    refused = cli("extract", "--config", str(config), "--date", DAY1, "--shard", "1/2")
    assert refused.exit_code == ExitCode.CONFIG
    assert "is before yesterday" in refused.output
    assert not out.exists()
    for index in (1, 2):  # with --allow-backdate, the publish records it, as a single run does
        assert extract_shard(config, f"{index}/2").exit_code == 0
    assert publish(config, 2).exit_code == 0
    assert json.loads((partition(out) / "_manifest.json").read_text())["backdated"] is True


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda record: b"{not json", "is not valid JSON"),
        (lambda record: b"[1, 2]", "does not hold a shard record"),
        (
            lambda record: json.dumps({**record, "targets_attempted": "many"}).encode(),
            "targets_attempted",
        ),
        (lambda record: json.dumps({**record, "run_outcome": 5}).encode(), "run_outcome"),
        (
            lambda record: json.dumps({**record, "failures": [{"error_type": "made_up"}]}).encode(),
            "made_up",
        ),
        (lambda record: b" " * (17 * 2**20), "larger than"),
        (
            lambda record: json.dumps(
                {**record, "failures": [{"org": "o", "error_type": "not_found", "attempts": "x"}]}
            ).encode(),
            "is not a failure record",
        ),
    ],
    ids=[
        "not-json",
        "a-list",
        "wrong-type",
        "wrong-shape",
        "unknown-error-type",
        "huge",
        "bad-failure",
    ],
)
def test_a_part_record_that_is_not_one_is_refused_naming_it(
    setup: Any, change: Callable[[dict[str, Any]], bytes], named: str
) -> None:
    """A part's record is read back as untrusted input: a damaged or foreign one is one Error:
    line naming the object and what is wrong, never a traceback, and nothing is published."""
    _, out, config = setup
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    path = out / staging.part_path(DAY, 2, 2) / staging.RECORD_NAME
    path.write_bytes(change(json.loads(path.read_text())))
    result = publish(config, 2)
    assert result.exit_code in (ExitCode.OUTPUT, ExitCode.SHARDS_INCOMPLETE), result.output
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.output
    assert "2-of-2" in result.stderr and named in result.stderr
    assert not partition(out).exists()
