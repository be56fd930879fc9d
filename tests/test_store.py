"""The Store contract, on both stores: what every protocol of the connector relies on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from stores import tree

from connector.dataset.localstore import LocalStore
from connector.dataset.locate import open_store
from connector.dataset.store import Store
from connector.errors import ConfigError, OutputError


def test_put_get_and_list(store: Store) -> None:
    store.put("a/b/one.json", b"1")
    store.put("a/two.json", b"22")
    store.put("a/two.json", b"222")  # replaced whole
    assert store.get("a/b/one.json") == b"1"
    assert store.get("a/two.json") == b"222"
    assert store.get("a/missing.json") is None
    assert store.get("nowhere/at/all.json") is None
    assert [(e.name, e.kind) for e in store.list("a")] == [("b", "dir"), ("two.json", "file")]
    assert store.list("nowhere") == []
    entry = store.info("a/two.json")
    assert entry is not None and entry.kind == "file" and entry.size == 3 and entry.mtime_ns
    assert store.info("a/missing.json") is None


def test_a_small_object_read_is_bounded(store: Store) -> None:
    store.put("big.json", b"x" * 2048)
    with pytest.raises(OutputError, match="larger than 1024 bytes"):
        store.get("big.json", limit=1024)
    assert store.get("big.json", limit=2048) == b"x" * 2048


def test_a_sink_appears_whole_at_commit_and_never_on_abort(store: Store) -> None:
    sink = store.open_sink("d/file.bin")
    sink.stream.write(b"new content")
    assert store.get("d/file.bin") is None  # nothing at its name until the commit
    sink.commit()
    assert store.get("d/file.bin") == b"new content"
    aborted = store.open_sink("d/other.bin")
    aborted.stream.write(b"half")
    aborted.abort()
    aborted.abort()  # idempotent
    assert [e.name for e in store.list("d")] == ["file.bin"]  # nothing else, no temporary
    with pytest.raises(OutputError, match="exists already"):  # a data file's name is new
        store.open_sink("d/file.bin")


def test_copy_and_move_replace_the_target(store: Store) -> None:
    store.put("src/a.bin", b"a")
    store.put("dst/b.bin", b"old b")
    store.copy("src/a.bin", "dst/b.bin")
    assert store.get("dst/b.bin") == b"a" and store.get("src/a.bin") == b"a"
    store.put("src/c.bin", b"c")
    store.move("src/c.bin", "dst/b.bin")
    assert store.get("dst/b.bin") == b"c"
    assert store.get("src/c.bin") is None
    with pytest.raises(OutputError):
        store.move("src/missing.bin", "dst/x.bin")


def test_delete_and_delete_tree_are_quiet_when_absent(store: Store) -> None:
    store.put("t/x/1", b"1")
    store.put("t/2", b"2")
    store.delete("t/2")
    store.delete("t/2")
    store.delete_tree("t")
    store.delete_tree("t")
    assert tree(store) == {}


def test_paths_that_are_not_plain_names_are_refused(store: Store) -> None:
    for path in ("a/../b", "./a", "a/./b"):
        with pytest.raises(OutputError, match="refusing the path"):
            store.put(path, b"x")


def test_a_store_pickles_to_the_same_root(store: Store) -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(store))
    store.put("p.json", b"p")
    assert copy.get("p.json") == b"p" and copy.uri == store.uri


def test_open_store_picks_the_implementation(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert open_store(f"file://{tmp_path}").native("x") == str(tmp_path / "x")
    with pytest.raises(ConfigError, match="only apply to s3://"):
        open_store(str(tmp_path), {"region": "eu-west-1"})
    with pytest.raises(ConfigError, match="not supported"):
        open_store("gs://bucket/x")


# --- links: the local store never follows one ----------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> tuple[LocalStore, Path]:
    """A local store and a directory outside it holding something precious."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "data.txt").write_text("precious")
    return LocalStore(tmp_path / "out"), outside


def test_a_link_in_a_path_is_refused_for_every_operation(local: tuple[LocalStore, Path]) -> None:
    store, outside = local
    store.put("keep.json", b"{}")
    os.symlink(outside, store.root / "linked")
    for operation in (
        lambda: store.put("linked/x.json", b"x"),
        lambda: store.get("linked/data.txt"),
        lambda: store.list("linked"),
        lambda: store.open_sink("linked/y.bin"),
        lambda: store.copy("keep.json", "linked/z.json"),
        lambda: store.move("keep.json", "linked/z.json"),
        lambda: store.lock("linked/part.lock", "run"),
    ):
        with pytest.raises(OutputError, match="is a symbolic link"):
            operation()
    assert sorted(p.name for p in outside.iterdir()) == ["data.txt"]
    assert (outside / "data.txt").read_text() == "precious"


def test_a_link_is_listed_as_a_link_and_deleted_itself(local: tuple[LocalStore, Path]) -> None:
    store, outside = local
    store.put("d/real.json", b"{}")
    os.symlink(outside / "data.txt", store.root / "d" / "file-link")
    os.symlink(outside, store.root / "d" / "dir-link")
    kinds = {e.name: e.kind for e in store.list("d")}
    assert kinds == {"dir-link": "link", "file-link": "link", "real.json": "file"}
    with pytest.raises(OutputError, match="is a symbolic link"):
        store.get("d/file-link")
    store.delete("d/file-link")
    store.delete_tree("d/dir-link")
    store.delete_tree("d")
    assert (outside / "data.txt").read_text() == "precious"


def test_a_file_where_a_directory_belongs_is_refused(local: tuple[LocalStore, Path]) -> None:
    store, _ = local
    store.put("plain", b"a file")
    with pytest.raises(OutputError, match="is not a directory"):
        store.put("plain/x.json", b"x")
