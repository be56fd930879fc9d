"""The one way the connector replaces a local file: whole, durable, or not at all.

Every file a reader or collector may open while a run writes it (the partition manifest, the
publish journal, rejected payloads, the metrics textfile, report output) goes through
`write_atomic`, so they all share the same guarantees:

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
import os
import secrets
import stat
import tempfile
from pathlib import Path

# Room for the random part and suffix within the usual 255-byte NAME_MAX.
_MAX_STEM = 200


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o666) -> None:
    """Replace `path` with `data` (text is written as UTF-8) atomically and durably.

    A new file gets `mode` minus the umask (0o644 for files others must not change).

    Raises OSError naming what failed; the target is then unchanged, except when only the final
    directory fsync failed (the new content is in place but may not survive a power cut).
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temp = target.with_name(f".{target.name[:_MAX_STEM]}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temp, stat.S_IMODE(target.stat().st_mode))
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
