"""Planted links and hand-made files in the output: a run never writes, renames or deletes
outside its own layout, and refuses (exit 7, one `Error:` line) what it did not create."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import config_document, write_config
from shard_runs import extract_shard, publish

from connector.cli import main
from connector.dataset import shards as staging
from connector.dataset.layout import LOCK_NAME
from connector.dataset.localstore import LocalStore
from connector.errors import ExitCode
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
DAY = "2026-01-01"
SHARD_DAY = date(2026, 1, 1)  # shard_runs runs its DAY1, the same day


@pytest.fixture
def setup(
    start_simulator: StartSimulator, tmp_path: Path, token_env: str
) -> tuple[Path, Path, Path]:
    """(config, output root, a directory outside it holding something precious)."""
    registry = start_simulator(orgs=1, models_per_org=3)
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "elsewhere"
    (outside / "keep-me").mkdir(parents=True)
    (outside / "keep-me" / "data.txt").write_text("precious")
    (outside / "file.txt").write_text("precious")
    return write_config(tmp_path / "c.yaml", config_document(registry, out)), out, outside


def run(config: Path) -> Result:
    return CliRunner().invoke(
        main, ["extract", "--config", str(config), "--date", DAY, "--allow-backdate"]
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(directory.rglob("*"))
    }


def assert_refused(result: Result, what: str) -> None:
    assert result.exit_code == ExitCode.OUTPUT, result.output
    assert result.stderr.startswith("Error: ") and what in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["_staging", "_rejected", "_runs", "model_versions", "_shards"])
def test_a_layout_directory_that_is_a_link_is_refused(
    name: str, setup: tuple[Path, Path, Path]
) -> None:
    config, out, outside = setup
    before = snapshot(outside)
    (out / name).symlink_to(outside, target_is_directory=True)
    assert_refused(run(config), f"{out / name} is a symbolic link")
    assert snapshot(outside) == before  # not a subfolder deleted, not a file written


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(
    setup: tuple[Path, Path, Path],
) -> None:
    config, out, outside = setup
    (out / LOCK_NAME).symlink_to(outside / "file.txt")
    assert_refused(run(config), "is a symbolic link")
    assert (outside / "file.txt").read_text() == "precious"


def test_layout_entries_of_the_wrong_type_are_refused(setup: tuple[Path, Path, Path]) -> None:
    config, out, _ = setup
    (out / LOCK_NAME).mkdir()
    assert_refused(run(config), f"{out / LOCK_NAME} is not a regular file")
    os.rmdir(out / LOCK_NAME)
    (out / "_staging").write_text("not a directory")
    assert_refused(run(config), f"{out / '_staging'} is not a directory")


def test_a_partition_folder_that_is_a_link_is_refused(setup: tuple[Path, Path, Path]) -> None:
    config, out, outside = setup
    (out / "model_versions").mkdir()
    link = out / "model_versions" / f"snapshot_date={DAY}"
    link.symlink_to(outside / "keep-me", target_is_directory=True)
    before = snapshot(outside)
    assert_refused(run(config), f"{link} is a symbolic link")
    assert snapshot(outside) == before
    assert link.is_symlink()  # left for a person to look at, not replaced


def test_a_link_inside_staging_is_removed_but_not_followed(
    setup: tuple[Path, Path, Path],
) -> None:
    config, out, outside = setup
    (out / "_staging").mkdir()
    (out / "_staging" / "planted").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    assert run(config).exit_code == 0
    assert snapshot(outside) == before
    assert list((out / "_staging").iterdir()) == []


def _journal(out: Path, document: object) -> Path:
    work_dir = out / "_staging" / ("0" * 32)
    work_dir.mkdir(parents=True)
    path = work_dir / "publish-journal.json"
    path.write_bytes(document if isinstance(document, bytes) else json.dumps(document).encode())
    return work_dir


def test_a_hand_made_journal_naming_outside_paths_renames_nothing(
    setup: tuple[Path, Path, Path],
) -> None:
    config, out, outside = setup
    work_dir = _journal(
        out,
        {
            "final": str(outside / "gone"),  # absent: a naive recovery renames `staged` there
            "staged": str(outside / "keep-me"),
            "previous": str(outside / "file.txt"),
        },
    )
    before = snapshot(outside)
    result = run(config)
    assert_refused(result, "names paths outside this run's layout")
    assert f"delete {work_dir}" in result.stderr
    assert snapshot(outside) == before
    assert run(config).exit_code == ExitCode.OUTPUT  # refused every time, never acted on


@pytest.mark.parametrize(
    "document", [b"{not json", b'{"final": "\xff"}', [1], {"final": 1}, b"[" * 100_000]
)
def test_a_corrupt_journal_is_refused_with_an_error_not_a_traceback(
    document: object, setup: tuple[Path, Path, Path]
) -> None:
    config, out, _ = setup
    _journal(out, document)
    result = run(config)
    assert result.exit_code == ExitCode.OUTPUT, result.output
    assert "the publish journal" in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda value: os.umask(value) and None
    os.umask(previous)


def test_modes_follow_the_umask_and_the_lock_and_records_are_not_world_writable(
    setup: tuple[Path, Path, Path], umask: Callable[[int], None]
) -> None:
    config, out, _ = setup
    umask(0)
    assert run(config).exit_code == 0
    for path in [out / LOCK_NAME, *(out / "_runs").rglob("*.json")]:
        assert not stat.S_IMODE(path.stat().st_mode) & stat.S_IWOTH, path
    partition = out / "model_versions" / f"snapshot_date={DAY}"
    assert stat.S_IMODE(partition.stat().st_mode) == 0o777  # made under umask 0
    umask(0o077)
    assert run(config).exit_code == 0  # a re-run's files get its own umask's modes
    assert stat.S_IMODE((partition / "_manifest.json").stat().st_mode) == 0o600
    [parquet] = partition.glob("*.parquet")
    assert not stat.S_IMODE(parquet.stat().st_mode) & 0o077


# --- the shard staging area: _shards/<date>/K-of-N/ ---------------------------------------------


def _staged(config: Path, out: Path) -> Path:
    """Both parts of a 2-shard run staged; returns part 1's directory."""
    for shard in ("1/2", "2/2"):
        assert extract_shard(config, shard).exit_code == 0
    return out / staging.part_path(SHARD_DAY, 1, 2)


def _listed(part: Path) -> list[str]:
    files: list[str] = json.loads((part / staging.RECORD_NAME).read_text())["files"]
    return files


SHARD_ENTRIES: dict[str, Callable[[Path], Path]] = {
    "_shards": lambda part: part.parent.parent,
    "date": lambda part: part.parent,
    "part": lambda part: part,
    "lock": lambda part: part.with_name(f"{part.name}.lock"),
    "record": lambda part: part / staging.RECORD_NAME,
    "data file": lambda part: part / _listed(part)[0],
}


@pytest.mark.parametrize("entry", SHARD_ENTRIES)
def test_a_shard_staging_entry_that_is_a_link_is_refused_and_its_target_untouched(
    entry: str, setup: tuple[Path, Path, Path]
) -> None:
    config, out, outside = setup
    path = SHARD_ENTRIES[entry](_staged(config, out))
    shutil.move(path, outside / "moved")  # the real entry, now outside, behind a link
    path.symlink_to(outside / "moved", target_is_directory=(outside / "moved").is_dir())
    before = snapshot(outside)
    assert_refused(extract_shard(config, "1/2"), f"{path} is a symbolic link")
    assert_refused(publish(config, 2), f"{path} is a symbolic link")
    assert snapshot(outside) == before  # not written, renamed or deleted through the link
    assert path.is_symlink()
    assert not (out / "model_versions" / f"snapshot_date={DAY}").exists()


@pytest.mark.parametrize("entry", SHARD_ENTRIES)
def test_a_shard_staging_entry_of_the_wrong_type_is_refused(
    entry: str, setup: tuple[Path, Path, Path]
) -> None:
    config, out, _ = setup
    path = SHARD_ENTRIES[entry](_staged(config, out))
    directory = path.is_dir()
    shutil.rmtree(path) if directory else path.unlink()
    path.write_text("not a directory") if directory else path.mkdir()
    wrong = "is not a directory" if directory else "is not a regular file"
    assert_refused(extract_shard(config, "1/2"), f"{path} {wrong}")
    assert_refused(publish(config, 2), f"{path} {wrong}")


NAMES: dict[str, Callable[[Path, Path], str]] = {
    "absolute": lambda part, outside: str(outside / "stolen.parquet"),
    "dot-dot": lambda part, outside: "../../../../elsewhere/stolen.parquet",
    "subdirectory": lambda part, outside: "sub/stolen.parquet",
}


@pytest.mark.parametrize("form", NAMES)
def test_a_shard_record_naming_a_file_outside_its_part_is_refused(
    form: str, setup: tuple[Path, Path, Path]
) -> None:
    config, out, outside = setup
    part = _staged(config, out)
    listed = _listed(part)
    shutil.copy(part / listed[0], outside / "stolen.parquet")  # readable rows, outside
    (part / "sub").mkdir()
    shutil.copy(part / listed[0], part / "sub" / "stolen.parquet")
    record = json.loads((part / staging.RECORD_NAME).read_text())
    record["files"] = [NAMES[form](part, outside)]
    (part / staging.RECORD_NAME).write_text(json.dumps(record))
    before = snapshot(outside)
    assert_refused(publish(config, 2), f"{part / staging.RECORD_NAME} lists files outside")
    assert snapshot(outside) == before
    assert not (out / "model_versions" / f"snapshot_date={DAY}").exists()


def test_a_link_left_in_a_part_is_unlinked_by_a_rerun_not_followed(
    setup: tuple[Path, Path, Path],
) -> None:
    config, out, outside = setup
    part = _staged(config, out)
    (part / "planted").symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)
    assert extract_shard(config, "1/2").exit_code == 0
    assert snapshot(outside) == before
    assert sorted(p.name for p in part.iterdir()) == sorted([staging.RECORD_NAME, *_listed(part)])


@pytest.mark.parametrize("entry", ["date", "part"])
def test_removing_published_parts_never_follows_a_link(
    entry: str, setup: tuple[Path, Path, Path]
) -> None:
    config, out, outside = setup
    path = SHARD_ENTRIES[entry](_staged(config, out))
    shutil.move(path, outside / "moved")
    path.symlink_to(outside / "moved", target_is_directory=True)
    before = snapshot(outside)
    staging.remove_parts(LocalStore(out), SHARD_DAY, 2)  # as after a publish: never fails
    assert snapshot(outside) == before
    assert path.is_symlink() == (entry == "date")  # a planted date dir is left for a person
