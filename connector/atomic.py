"""The one way the connector replaces a local file: whole, durable, or not at all.

Every file a reader or collector may open while a run writes it (manifests, journals, records,
rejected payloads, the metrics textfile, report output) goes through `write_atomic`, data files
through `AtomicFile`, copies through `replace_with_copy`, so they all share the same guarantees:

- readers see the old content or the new, never a part: the bytes go to a temporary file in
  the same directory (same filesystem, so the rename is atomic) and are renamed over the target;
- the new content survives a power cut once the call returns: the file is fsynced before the
  rename and the directory after it (a rename is only durable once its directory is);
- concurrent writers never share a temporary file: each gets a unique name, created with
  O_EXCL, so two runs writing the same path cannot truncate or steal each other's file;
- nothing is left behind: on any failure (or interrupt) before the rename the temporary file
  is removed and the target is untouched;
- permissions are what a plain `open()` would give: an existing target keeps its mode, a new
  one gets 0o666 minus the process umask (the kernel applies it), not mkstemp's 0o600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

# Room for the random part and suffix within the usual 255-byte NAME_MAX.
_MAX_STEM = 200
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# A hard link is not possible everywhere (some network and FUSE filesystems): copy instead.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name[:_MAX_STEM]}.{secrets.token_hex(8)}.tmp")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o666, keep_mode: bool = True
) -> None:
    """Replace `path` with `data` (text is written as UTF-8) atomically and durably.

    A new file gets `mode` minus the umask (0o644 for files others must not change); an
    existing one keeps its mode unless `keep_mode` is False (a file that belongs to a new run,
    such as a partition's manifest, gets the mode of this run).

    Raises OSError naming what failed; the target is then unchanged, except when only the final
    directory fsync failed (the new content is in place but may not survive a power cut).
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temp = _temporary(target)
    fd = os.open(temp, _CREATE, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_mode:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(temp, stat.S_IMODE(target.stat().st_mode))
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(target.parent)


class AtomicFile:
    """A file streamed to a temporary name beside `target` and renamed over it by `commit`
    (fsynced first, its directory after), with the guarantees of `write_atomic`; `abort`
    removes the temporary file, so nothing ever appears half written at `target`."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.temp = _temporary(target)
        self._stream: BinaryIO = os.fdopen(os.open(self.temp, _CREATE, 0o666), "wb")
        self._done = False

    @property
    def stream(self) -> BinaryIO:
        return self._stream

    def commit(self) -> None:
        try:
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._stream.close()
            os.replace(self.temp, self.target)
        except BaseException:
            self.abort()
            raise
        self._done = True
        fsync_dir(self.target.parent)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError, ValueError):
            self._stream.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)


def replace_with_copy(source: Path, target: Path) -> None:
    """Replace `target` atomically with the content of the file `source`: a hard link to a
    temporary name (no data copied), or a durable copy where links are not possible, then a
    rename. Raises OSError; `target` is then unchanged and no temporary file is left."""
    temp = _temporary(target)
    try:
        try:
            os.link(source, temp, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            shutil.copyfile(source, temp, follow_symlinks=False)
            with open(temp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(target.parent)


def scratch_directory(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A private temporary directory (mode 0700) for work files that are never published, such
    as the report engine's spill files; `.cleanup()` removes it. Temporary files live here so
    that this module stays the one place that makes them."""
    return tempfile.TemporaryDirectory(prefix=prefix)
