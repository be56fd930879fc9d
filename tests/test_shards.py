"""Sharded snapshots: `extract --shard K/N` stages, `publish --shards N` merges or refuses.

Everything runs the real CLI against the simulator on 127.0.0.1; the published dataset is read
back with DuckDB and compared with the simulator's ground truth. The scenarios where storage
matters (staging, publishing, refusing, locking) run on each store (a local directory, and a
bucket of moto's S3 API); the rules of the shard records are checked on a local directory.
Killed runs on object storage are in test_s3_shards.py.
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
from ground_truth import dataset_rows, expected, project, store_rows
from helpers import TOKEN, config_document, file_hashes, write_config
from s3_objects import ENV
from shard_runs import cli, extract_shard, publish
from stores import tree

from connector import extract
from connector.config import load_config, parse_config
from connector.dataset import shards as staging
from connector.dataset.layout import DATA_NAME, LOCK_NAME, MANIFEST_NAME, partition_path
from connector.dataset.lease import LOCKS_DIR
from connector.dataset.locate import open_store
from connector.dataset.reader import read_manifest
from connector.dataset.store import Store
from connector.errors import ConfigError, ExitCode
from connector.extraction.sharding import fingerprint, parse_shard, select, shard_of
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY1 = "2026-01-01"
DAY = date(2026, 1, 1)
PARTITION = partition_path(DAY)


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


@pytest.fixture
def on_store(
    start_simulator: StartSimulator, store: Store, tmp_path: Path, token_env: str
) -> tuple[SimulatedRegistry, Store, Path]:
    """The `setup` of this module on each store."""
    registry = start_simulator(orgs=2, models_per_org=6, versions_shape="objects")
    document = config_document(registry, Path("unused"), output_settings={"uri": store.uri})
    return registry, store, write_config(tmp_path / "c.yaml", document)


def record_of(store: Store, index: int, count: int, day: date = DAY) -> dict[str, Any]:
    """The record of the staged part `index`-of-`count`."""
    raw = store.get(f"{staging.part_path(day, index, count)}/{staging.RECORD_NAME}")
    assert raw is not None, f"no record for part {index}-of-{count}"
    record: dict[str, Any] = json.loads(raw)
    return record


def names(store: Store, path: str) -> list[str]:
    return [entry.name for entry in store.list(path)]


def without_run_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without `extracted_at`, the one column that differs by run."""
    return [{k: v for k, v in row.items() if k != "extracted_at"} for row in rows]


def test_shards_publish_one_snapshot_equal_to_a_one_process_run(
    on_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three shards, a failing model in two of them: each shard stages its part (exit 3 where
    a model failed) and never publishes; the publish merges the parts into one snapshot, row
    for row what one process publishes, with every failure in one manifest, and leaves no
    part, staging or lease behind."""
    registry, store, config = on_store
    broken = ["org-00/model-0000", "org-01/model-0001"]
    failing = {shard_of(*key.split("/"), 3) for key in broken}
    assert failing == {1, 2}  # shard 3 has no failure
    registry.set_faults(FaultPlan(not_found=frozenset(broken)))
    single = open_store(f"{store.uri}-single")
    document = config_document(
        registry, Path("unused"), output_settings={"uri": single.uri, "min_success_ratio": 0.8}
    )
    assert extract(parse_config(document, ENV), DAY, allow_backdate=True).exit_code == 3

    monkeypatch.chdir(tmp_path)
    staged = []
    for index in (1, 2, 3):
        result = extract_shard(config, f"{index}/3", "--summary-format", "json")
        assert result.exit_code == (3 if index in failing else 0), result.output  # staged anyway
        summary = json.loads(result.stdout)
        assert summary["published"] is False and summary["shard"] == f"{index}/3"
        part = staging.part_path(DAY, index, 3)
        assert summary["staged"] == store.display(part)
        record = record_of(store, index, 3)
        assert names(store, part) == sorted([staging.RECORD_NAME, *record["files"]])
        assert TOKEN not in json.dumps(record)
        assert record["fingerprint"].startswith("sha256:")
        staged.append(summary["targets"]["attempted"])
        assert store.info(PARTITION) is None  # a shard never publishes
    assert sum(staged) == 12
    assert not (tmp_path / "s3:").exists()  # an s3:// URI is never taken for a local path

    result = publish(config, 3, "--min-success-ratio", "0.8")
    assert result.exit_code == 3, result.output
    assert "(from 3 shards)" in result.stdout
    assert without_run_columns(store_rows(store)) == without_run_columns(store_rows(single))
    want = [r for r in expected(registry, 1) if f"{r['org']}/{r['model']}" not in broken]
    assert project(store_rows(store)) == project(want)
    manifest = read_manifest(store, DAY)
    assert manifest is not None and manifest["shards"] == 3
    assert [f"{f['org']}/{f['model']}" for f in manifest["failures"]] == broken
    assert manifest["targets"] == {"attempted": 12, "succeeded": 10, "failed": 2}
    assert manifest["requests"] == {"200": 10, "404": 2}
    # One data file and its manifest; the publish's run record; every part and lease gone.
    assert sorted(tree(store, "model_versions")) == [
        f"{PARTITION}/{MANIFEST_NAME}",
        f"{PARTITION}/{DATA_NAME}",
    ]
    assert {path.split("/")[0] for path in tree(store)} <= {
        "model_versions",
        "_runs",
        LOCK_NAME,
    }


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


def test_rerunning_a_shard_replaces_only_that_part(on_store: Any) -> None:
    registry, store, config = on_store
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    other = tree(store, staging.part_path(DAY, 2, 2))
    first = record_of(store, 1, 2)
    registry.set_day(2)  # the registry moved on: shard 1 now fetches different counts
    assert extract_shard(config, "1/2").exit_code == 0
    assert tree(store, staging.part_path(DAY, 2, 2)) == other  # byte for byte
    again = record_of(store, 1, 2)
    assert again["run_id"] != first["run_id"]
    assert names(store, staging.part_path(DAY, 1, 2)) == sorted(
        [staging.RECORD_NAME, *again["files"]]
    )
    assert not set(first["files"]) & set(again["files"])  # the earlier run's files are gone
    assert publish(config, 2).exit_code == 0
    rows = project(store_rows(store))
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


def test_a_missing_shard_is_refused_and_nothing_is_published(on_store: Any) -> None:
    _, store, config = on_store
    assert (
        cli("extract", "--config", str(config), "--date", DAY1, "--allow-backdate").exit_code == 0
    )
    before = tree(store, PARTITION)
    for index in (1, 3):
        assert extract_shard(config, f"{index}/3").exit_code == 0
    result = publish(config, 3)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE == 9
    missing = store.display(staging.part_path(DAY, 2, 3))
    assert f"shard 2/3 is missing: nothing is staged in {missing}" in result.output
    assert "nothing was published" in result.output
    assert tree(store, PARTITION) == before  # the previous snapshot, byte for byte
    for index in (1, 3):  # and the staged parts are kept
        assert staging.read_part(store, DAY, index, 3) is not None
    assert not tree(store, "_staging") and not tree(store, LOCKS_DIR)
    other = publish(config, 2)  # a count never staged names the ones that were
    assert other.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "also staged for this date: 1-of-3, 3-of-3" in other.output


def test_a_shard_staged_with_another_config_is_stale(on_store: Any, tmp_path: Path) -> None:
    registry, store, config = on_store
    assert extract_shard(config, "1/2").exit_code == 0
    fewer = config_document(registry, Path("unused"), output_settings={"uri": store.uri})
    fewer["orgs"][1]["models"] = fewer["orgs"][1]["models"][:3]
    other = write_config(tmp_path / "other.yaml", fewer)
    assert extract_shard(other, "2/2").exit_code == 0
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert "shard 2/2 is stale: staged with another configuration" in result.output
    assert "shard 1/2" not in result.output
    assert not tree(store, "model_versions")


def test_a_damaged_part_is_refused(on_store: Any) -> None:
    _, store, config = on_store
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    part = staging.part_path(DAY, 2, 2)
    [name] = record_of(store, 2, 2)["files"]
    store.delete(f"{part}/{name}")
    result = publish(config, 2)
    assert result.exit_code == ExitCode.SHARDS_INCOMPLETE
    assert f"shard 2/2 is damaged: files missing in {store.display(part)}" in result.output
    assert not tree(store, "model_versions")


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


def test_a_shard_in_progress_blocks_publish_and_a_second_run_of_it(on_store: Any) -> None:
    _, store, config = on_store
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    held = record_of(store, 2, 2)
    with staging.shard_lock(store, DAY, 2, 2, "someone-else"):
        result = publish(config, 2)
        assert result.exit_code == ExitCode.LOCK_HELD, result.output
        # (the stores name the lock each in its own words: the flock's part, or the lease)
        named = "lock on shard 2-of-2" if store.is_local else "(_shards/2026-01-01/2-of-2.lock)"
        assert named in result.output and "(run someone-else)" in result.output
        again = extract_shard(config, "2/2")
        assert again.exit_code == ExitCode.LOCK_HELD
        assert extract_shard(config, "1/2").exit_code == 0  # other shards are not held up
        assert record_of(store, 2, 2) == held  # the refused run changed nothing
    assert not tree(store, "model_versions")
    assert publish(config, 2).exit_code == 0
    assert not tree(store, staging.SHARDS_DIR) and not tree(store, LOCKS_DIR)


def test_a_426_in_a_shard_unstages_it(on_store: Any) -> None:
    registry, store, config = on_store
    for index in (1, 2):
        assert extract_shard(config, f"{index}/2").exit_code == 0
    registry.set_faults(FaultPlan(upgrade_required=True))
    assert extract_shard(config, "2/2").exit_code == ExitCode.INCOMPATIBLE_API
    registry.set_faults(FaultPlan())
    assert staging.RECORD_NAME not in names(store, staging.part_path(DAY, 2, 2))
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
