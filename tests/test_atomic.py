"""`write_atomic`: each guarantee has a test that fails without it."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector import atomic
from connector.atomic import write_atomic


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(previous)


def test_writes_text_as_utf8_and_bytes_as_they_are(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a.txt", "grüße\n")
    write_atomic(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "a.txt").read_bytes() == "grüße\n".encode()
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin"]


def test_a_failed_write_leaves_the_target_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "_manifest.json"
    target.write_text("old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["_manifest.json"]


def test_an_interrupt_before_the_rename_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(source: str, destination: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "metrics.prom", "x 1\n")
    assert os.listdir(tmp_path) == []


def test_a_rename_that_fails_for_real_removes_the_temp_file(tmp_path: Path) -> None:
    (tmp_path / "report.html").mkdir()  # a directory cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "report.html", "<html>")
    assert os.listdir(tmp_path) == ["report.html"]


def test_concurrent_writers_of_one_path_never_share_a_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer B runs entirely while writer A sits between its fsync and its rename (as a second
    run or thread would): with a shared temp name, B would truncate A's file and rename it away,
    and A's rename would then fail or publish B's bytes."""
    target = tmp_path / "model.json"
    real_fsync = os.fsync
    nested: list[bool] = []

    def fsync_then_let_b_write(fd: int) -> None:
        real_fsync(fd)
        if not nested and stat.S_ISREG(os.fstat(fd).st_mode):
            nested.append(True)
            write_atomic(target, "from B")

    monkeypatch.setattr(atomic.os, "fsync", fsync_then_let_b_write)
    write_atomic(target, "from A")
    assert nested
    assert target.read_text() == "from A"  # A renamed last, with its own complete file
    assert os.listdir(tmp_path) == ["model.json"]


def test_the_file_is_fsynced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(source: str, destination: str) -> None:
        events.append("rename")
        real_replace(source, destination)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write_atomic(tmp_path / "journal.json", "{}")
    assert events == ["fsync file", "rename", "fsync dir"]


@pytest.mark.usefixtures("umask_027")
def test_a_new_file_gets_the_umask_mode_and_an_existing_one_keeps_its_mode(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "fresh.json"
    write_atomic(fresh, "1")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640  # 0o666 & ~0o027, not mkstemp's 0o600
    kept = tmp_path / "kept.prom"
    kept.write_text("0")
    os.chmod(kept, 0o604)
    write_atomic(kept, "1")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o604


def test_a_long_name_still_fits_the_filesystem_limit(tmp_path: Path) -> None:
    target = tmp_path / ("m" * 250)
    write_atomic(target, "x")
    assert target.read_text() == "x"


def test_a_missing_directory_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        write_atomic(tmp_path / "missing" / "x.json", "x")


def test_no_other_module_writes_files_atomically_by_hand() -> None:
    """One helper, one set of guarantees: a second temp-file writer or a hand-made directory
    fsync is a regression (moving finished files with os.replace is fine)."""
    package = Path(atomic.__file__).parent
    hand_made = re.compile(r"tempfile|mkstemp|\.tmp\b|os\.open\([^)]*O_RDONLY")
    offenders = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.name != "atomic.py" and hand_made.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
