"""What a published partition holds, read back for the half-config guard."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from connector.dataset.writer import partition_dir
from connector.errors import OutputError

_LOCAL = pafs.LocalFileSystem()


def published_targets(root: Path, day: date) -> set[tuple[str, str]]:
    """The (org, model) pairs that have rows in the published partition of `day`; empty when
    there is none. Reads only the two dictionary-encoded columns, so it is cheap."""
    directory = partition_dir(root, day)
    if not directory.is_dir():
        return set()
    pairs: set[tuple[str, str]] = set()
    try:
        for path in sorted(directory.glob("*.parquet")):
            table = pq.read_table(str(path), columns=["org", "model"], filesystem=_LOCAL)
            keys = table.group_by(["org", "model"]).aggregate([])
            pairs.update(
                zip(keys.column("org").to_pylist(), keys.column("model").to_pylist(), strict=True)
            )
    except (OSError, pa.ArrowException) as exc:
        raise OutputError(f"cannot read the published partition {directory}: {exc}") from exc
    return pairs
