"""What earlier versions of the connector left in a local output, handled safely.

Before the single-file layout (`connector.dataset.partition`), a local partition was built as a
directory in `_staging/<run>/` and swapped in whole, and a partition could hold several data
files (`part-<run>-00000.parquet`, `-00001`, ... past two million rows). Two things of that
layout can still be met after an upgrade:

- a partition with several data files: replacing its files one by one would show a reader a
  mix, so the new partition directory is swapped in whole with `renameat2(RENAME_EXCHANGE)`, or,
  where the kernel lacks it, with two renames under a journal that the next run rolls forward;
- that journal (`publish-journal.json`, absolute paths), left by a run killed between its two
  renames: `recover_old_journal` finishes it, after checking that it names exactly a partition
  of this output and its own staging directory (a hand-made journal renames nothing).

Object storage never had either: its partitions always held one object.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

from connector.atomic import fsync_dir, write_atomic
from connector.dataset.datafile import encode
from connector.dataset.layout import (
    DATASET_DIR,
    MANIFEST_NAME,
    PARTITION_PREFIX,
    check_entry,
    inside,
    make_dirs,
    staging_path,
)
from connector.dataset.localstore import LocalStore
from connector.dataset.store import Store
from connector.errors import OutputError

OLD_JOURNAL_NAME = "publish-journal.json"
_MAX_JOURNAL_BYTES = 64 * 1024
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_PARTITION = re.compile(rf"^{DATASET_DIR}/{PARTITION_PREFIX}(\d{{4}}-\d{{2}}-\d{{2}})$")


def is_partition_path(path: str) -> bool:
    """Whether `path` names a partition of the dataset (a real calendar day)."""
    match = _PARTITION.match(path)
    if match is None:
        return False
    try:
        date.fromisoformat(match.group(1))
    except ValueError:
        return False
    return True


def exchange_paths(first: Path, second: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2); False where unsupported."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        return False
    result = function(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(first))


def replace_multifile_partition(
    store: Store, day: date, source: str, manifest: dict[str, Any]
) -> None:
    """Swap a partition of several data files (an earlier version's) for the staged file, whole.
    The staging directory is left for the caller to remove (it then holds the old partition)."""
    if not isinstance(store, LocalStore):
        raise OutputError(
            f"{store.display(f'{DATASET_DIR}/{PARTITION_PREFIX}{day}')} holds several data "
            "files, which this connector never writes on object storage: check it by hand"
        )
    root = store.root
    work = Path(store.native(source)).parent
    staged = work / f"{PARTITION_PREFIX}{day.isoformat()}"
    final = make_dirs(root, DATASET_DIR) / staged.name
    try:
        staged.mkdir()
        os.replace(store.native(source), staged / "part-00000.parquet")
        write_atomic(staged / MANIFEST_NAME, encode(manifest))
        check_entry(final, directory=True)
        if not exchange_paths(staged, final):
            _swap_under_journal(work, staged, final)
        fsync_dir(final.parent)
    except OSError as exc:
        raise OutputError(f"cannot publish {final}: {exc.strerror or exc}") from exc


def _swap_under_journal(work: Path, staged: Path, final: Path) -> None:
    """Two renames where the kernel cannot exchange; a kill between them is rolled forward by
    the next run (`recover_old_journal`), a failed second rename is undone here."""
    previous = work / "previous"
    journal = {"final": str(final), "staged": str(staged), "previous": str(previous)}
    write_atomic(work / OLD_JOURNAL_NAME, json.dumps(journal).encode())
    os.rename(final, previous)
    try:
        os.rename(staged, final)
    except OSError:
        os.rename(previous, final)  # put the published partition back before reporting
        (work / OLD_JOURNAL_NAME).unlink()
        raise


def recover_old_journal(store: Store, work: str) -> list[str]:
    """Finish a two-rename publish that a kill interrupted (see the module docstring)."""
    if not isinstance(store, LocalStore):
        return []
    directory = Path(store.native(work))
    journal_path = directory / OLD_JOURNAL_NAME
    if not check_entry(journal_path, directory=False):
        return []
    final, staged, previous = _read_journal(journal_path, store.root, directory)
    if os.path.lexists(final):
        return []
    return [_restore(final, [staged, previous])]


def _restore(final: Path, sources: list[Path]) -> str:
    """Put the first source that can be moved back at `final`; OutputError if none can (the
    work directory is then kept by the caller's error, so nothing is lost)."""
    problems = []
    for source in sources:
        if not source.is_dir():
            continue
        try:
            os.rename(source, final)
        except OSError as exc:
            problems.append(f"{source}: {exc}")
            continue
        return f"completed interrupted publish of {final} from {source.name}"
    raise OutputError(
        f"an earlier run left {final} missing and it cannot be restored "
        f"({'; '.join(problems) or 'no copy found'}); fix the cause, then run again"
    )


def _read_journal(path: Path, root: Path, work: Path) -> tuple[Path, Path, Path]:
    """The (final, staged, previous) paths of an old journal, refused unless they are exactly
    what `_swap_under_journal` writes: a partition of this root and two entries of `work`."""
    fix = f"check {DATASET_DIR}/ by hand, then delete {work} and run again (nothing was changed)"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_JOURNAL_BYTES + 1)
        journal = json.loads(raw.decode("utf-8")) if len(raw) <= _MAX_JOURNAL_BYTES else None
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise OutputError(f"the publish journal {path} cannot be read ({exc}); {fix}") from exc
    keys = ("final", "staged", "previous")
    if not isinstance(journal, dict) or not all(isinstance(journal.get(k), str) for k in keys):
        raise OutputError(f"the publish journal {path} is not of the expected shape; {fix}")
    final, staged, previous = (Path(journal[k]) for k in keys)
    expected = (
        is_partition_path(f"{DATASET_DIR}/{final.name}")
        and final.parent == root / DATASET_DIR
        and staged == work / final.name
        and previous == work / "previous"
        and all(inside(p, root) for p in (final, staged, previous))
    )
    if not expected:
        raise OutputError(
            f"the publish journal {path} names paths outside this run's layout "
            f"({final}, {staged}, {previous}); {fix}"
        )
    check_entry(final, directory=True)
    return final, staged, previous


__all__ = [
    "OLD_JOURNAL_NAME",
    "exchange_paths",
    "is_partition_path",
    "recover_old_journal",
    "replace_multifile_partition",
    "staging_path",
]
