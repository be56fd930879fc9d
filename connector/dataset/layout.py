"""The connector's own paths under an output root, and the checks that keep it inside them.

The names are the same on every store (`connector.dataset.store`); the checks below are what
the local store does on every path it touches.

Anyone who can write into the output directory could plant a symbolic link where the connector
expects one of its own entries (`_staging` pointing at `/home`, `_connector.lock` at a file
elsewhere) and make a run write, rename or delete outside the dataset. So before a run touches
anything, every entry of the layout is checked with `lstat` (never followed) and a link, or an
entry of the wrong type, is refused with an `OutputError` naming it. Directories are created
one component at a time, each checked the same way, with the mode `mkdir` gives (0o777 minus
the umask). The root itself may be a link: the operator chose it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from connector.errors import OutputError

DATASET_DIR = "model_versions"
STAGING_DIR = "_staging"
REJECTED_DIR = "_rejected"
RUNS_DIR = "_runs"
SHARDS_DIR = "_shards"
HELD_DIR = "_held"
MANIFESTS_DIR = "_manifests"  # a Delta dataset's manifests, one per day, outside the table
LOCK_NAME = "_connector.lock"
LAYOUT_DIRS = (
    DATASET_DIR,
    STAGING_DIR,
    REJECTED_DIR,
    RUNS_DIR,
    SHARDS_DIR,
    HELD_DIR,
    MANIFESTS_DIR,
)
PARTITION_PREFIX = "snapshot_date="
DATA_NAME = "part-00000.parquet"  # a partition's one data file, as this version writes it
MANIFEST_NAME = "_manifest.json"
DELTA_LOG_NAME = "_delta_log"  # the transaction log of `output.format: delta`


@dataclass(frozen=True)
class DataFile:
    """One data file of a published day: its store path, its snapshot day, and what it looked
    like when listed (size and modification time, to notice a file replaced during a read)."""

    path: str
    day: date
    size: int | None
    mtime_ns: int | None


def partition_path(day: date) -> str:
    """The store path of one snapshot date's partition."""
    return f"{DATASET_DIR}/{PARTITION_PREFIX}{day.isoformat()}"


def staging_path(run_id: str) -> str:
    """Where one run builds what it publishes, outside the dataset (readers never see it)."""
    return f"{STAGING_DIR}/{run_id}"


def held_path(day: date, run_id: str) -> str:
    """Where a staged day that a check held waits for a person's decision."""
    return f"{HELD_DIR}/{day.isoformat()}/{run_id}"


def refusal(path: Path | str, what: str) -> OutputError:
    """The error for an entry of the layout that is not what the connector put there."""
    return OutputError(
        f"{path} {what}; the connector only writes to entries of its own layout and never "
        "follows links inside it: remove or rename it (or point output.uri at the real "
        "directory), then run again"
    )


def check_entry(path: Path, *, directory: bool) -> bool:
    """True if `path` exists as a real directory (or regular file); False if it is absent;
    OutputError if it is a symbolic link or of another type."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot inspect {path}: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise refusal(path, "is a symbolic link")
    if directory and not stat.S_ISDIR(info.st_mode):
        raise refusal(path, "is not a directory")
    if not directory and not stat.S_ISREG(info.st_mode):
        raise refusal(path, "is not a regular file")
    return True


def check_layout(root: Path) -> None:
    """Refuse a root whose layout entries, or partition folders, are links or the wrong type."""
    if root.exists() and not root.is_dir():
        raise OutputError(f"the output location {root} exists and is not a directory")
    for name in LAYOUT_DIRS:
        check_entry(root / name, directory=True)
    check_entry(root / LOCK_NAME, directory=False)
    dataset = root / DATASET_DIR
    if dataset.is_dir():
        check_entry(dataset / DELTA_LOG_NAME, directory=True)  # delta-rs writes through it
        with os.scandir(dataset) as entries:
            for entry in entries:
                if entry.name.startswith("snapshot_date="):
                    check_entry(Path(entry.path), directory=True)


def make_dirs(root: Path, *parts: str) -> Path:
    """`root/parts...` as real directories, each component created or checked without following
    a link; returns the path. OutputError names the component that is wrong."""
    path = root
    for part in parts:
        if not part or part in (".", "..") or "/" in part:
            raise OutputError(f"refusing the path component {part!r} under {root}")
        path = path / part
        if check_entry(path, directory=True):
            continue
        try:
            os.mkdir(path, 0o777)  # the umask applies
        except FileExistsError:  # created meanwhile: check what it is
            check_entry(path, directory=True)
        except OSError as exc:
            raise OutputError(f"cannot create the directory {path}: {exc.strerror or exc}") from exc
    return path


def inside(path: Path, parent: Path) -> bool:
    """Whether `path` is `parent` or lies below it, comparing the paths as written (no link is
    resolved: the layout has none, `check_layout` made sure)."""
    parts, parent_parts = Path(os.path.normpath(path)).parts, Path(os.path.normpath(parent)).parts
    return parts[: len(parent_parts)] == parent_parts
