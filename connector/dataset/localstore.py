"""`LocalStore`: the Store of a dataset in a local directory.

Every path is walked one component at a time with `lstat` (`connector.dataset.layout`): a
symbolic link, or an entry of the wrong type, where the connector expects one of its own
directories or files is refused with an `OutputError` naming it, never followed, so a link
planted in the output cannot make a run read, write, rename or delete elsewhere. The root
itself may be a link: the operator chose it.

Files appear whole: small ones through `connector.atomic.write_atomic`, data files through a
temporary file in the same directory that is fsynced and renamed at commit, copies through a
hard link (or a copy) to a temporary name, then a rename. Renames stay inside the root, so they
are atomic; the directory is fsynced after each, so they are durable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from connector.atomic import AtomicFile, fsync_dir, replace_with_copy, write_atomic
from connector.dataset.layout import LOCK_NAME, check_entry, check_layout, make_dirs
from connector.dataset.lock import FileLock
from connector.dataset.store import SMALL_OBJECT_BYTES, Entry, Kind
from connector.errors import ConfigError, OutputError

_LOCAL = pafs.LocalFileSystem()
_NONBLOCKING_READ = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # read-only: O_RDONLY is 0


def local_root(uri: str | os.PathLike[str]) -> Path:
    """The local directory for a URI (a path or a file:// URI); `~` is the user's home."""
    text = os.fspath(uri)
    parts = urlsplit(text)
    if parts.scheme == "s3":
        raise ConfigError([f"{text}: this operation supports local paths only, not s3://"])
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(text).expanduser()


def _components(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part]
    for part in parts:
        if part in (".", "..") or "\\" in part or "\0" in part:
            raise OutputError(f"refusing the path {path!r}: {part!r} is not a plain name")
    return parts


def _kind(mode: int) -> Kind:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


class LocalStore:
    """A dataset in a local directory (see the module docstring)."""

    is_local = True
    filesystem: pafs.FileSystem = _LOCAL

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        self.uri = os.fspath(uri)
        self.root = local_root(uri)

    def __repr__(self) -> str:
        return f"LocalStore({self.uri!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalStore, (self.uri,))

    def native(self, path: str) -> str:
        return str(self.root.joinpath(*_components(path)))

    def display(self, path: str = "") -> str:
        return self.native(path)

    # -- walking ----------------------------------------------------------------------------

    def _made_root(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output directory {self.root}: {exc}") from exc
        if not self.root.is_dir():
            raise OutputError(f"the output location {self.root} exists and is not a directory")
        return self.root

    def _parent(self, path: str, *, create: bool) -> tuple[Path | None, str]:
        """The checked directory holding `path` (created when `create`; None when absent)
        and the last component's name."""
        parts = _components(path)
        if not parts:
            raise OutputError("refusing an empty path inside the output")
        *directories, name = parts
        if create:
            return make_dirs(self._made_root(), *directories), name
        here = self.root
        for part in directories:
            here = here / part
            if not check_entry(here, directory=True):
                return None, name
        return here, name

    def _existing(self, path: str) -> Path | None:
        parent, name = self._parent(path, create=False)
        return None if parent is None else parent / name

    # -- the Store operations ---------------------------------------------------------------

    def put(self, path: str, data: bytes, *, mode: int = 0o666) -> None:
        parent, name = self._parent(path, create=True)
        assert parent is not None
        target = parent / name
        check_entry(target, directory=False)  # a planted link or directory is refused
        try:
            write_atomic(target, data, mode=mode, keep_mode=False)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc

    def get(self, path: str, *, limit: int = SMALL_OBJECT_BYTES) -> bytes | None:
        target = self._existing(path)
        if target is None or not check_entry(target, directory=False):
            return None
        try:
            fd = os.open(target, _NONBLOCKING_READ)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise OutputError(f"cannot read {target}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "rb") as handle:
            os.set_blocking(fd, True)
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise OutputError(f"{target} is larger than {limit} bytes: not a file of the connector")
        return data

    def open_sink(self, path: str) -> AtomicFile:
        parent, name = self._parent(path, create=True)
        assert parent is not None
        target = parent / name
        if check_entry(target, directory=False):
            raise OutputError(f"cannot write {target}: it exists already")
        try:
            return AtomicFile(target)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc

    def list(self, path: str) -> list[Entry]:
        directory = self._existing(path) if path.strip("/") else self.root
        if directory is None or not check_entry(directory, directory=True):
            return []
        entries = []
        with os.scandir(directory) as listing:
            for item in listing:
                info = item.stat(follow_symlinks=False)
                entries.append(
                    Entry(item.name, _kind(info.st_mode), info.st_size, info.st_mtime_ns)
                )
        return sorted(entries, key=lambda entry: entry.name)

    def info(self, path: str) -> Entry | None:
        target = self._existing(path)
        if target is None:
            return None
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            return None
        return Entry(target.name, _kind(info.st_mode), info.st_size, info.st_mtime_ns)

    def copy(self, source: str, target: str) -> None:
        origin = self._existing(source)
        if origin is None or not check_entry(origin, directory=False):
            raise OutputError(f"cannot copy {self.display(source)}: it does not exist")
        parent, name = self._parent(target, create=True)
        assert parent is not None
        final = parent / name
        check_entry(final, directory=False)
        try:
            replace_with_copy(origin, final)
        except OSError as exc:
            raise OutputError(f"cannot copy to {final}: {exc.strerror or exc}") from exc

    def move(self, source: str, target: str) -> None:
        origin = self._existing(source)
        if origin is None or not check_entry(origin, directory=False):
            raise OutputError(f"cannot move {self.display(source)}: it does not exist")
        parent, name = self._parent(target, create=True)
        assert parent is not None
        final = parent / name
        check_entry(final, directory=False)
        try:
            os.replace(origin, final)  # one filesystem: atomic
        except OSError as exc:
            raise OutputError(f"cannot move to {final}: {exc.strerror or exc}") from exc
        fsync_dir(parent)

    def delete(self, path: str) -> None:
        target = self._existing(path)
        if target is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(target).st_mode):
                raise OutputError(f"cannot delete {target}: it is a directory")
            os.unlink(target)

    def delete_tree(self, path: str) -> None:
        target = self._existing(path) if path.strip("/") else None
        if target is None:
            return
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            shutil.rmtree(target, ignore_errors=True)  # never follows a link inside
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)  # a link is removed itself, never what it points at

    def lock(self, name: str, run_id: str) -> FileLock:
        if name == LOCK_NAME:  # the output's lock: the whole layout is checked first
            root = self._made_root()
            check_layout(root)
            return FileLock(root / LOCK_NAME, run_id, what=str(root))
        parent, base = self._parent(name, create=True)
        assert parent is not None
        shown = base.removesuffix(".lock")
        return FileLock(parent / base, run_id, what=f"shard {shown} of {parent}")
