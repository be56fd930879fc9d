"""What a published partition holds, read back for the half-config guard."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from connector.dataset.layout import DATASET_DIR
from connector.dataset.storage import STORAGE_ERRORS, Location, list_entries, local_location
from connector.errors import OutputError


def published_targets(root: Path | Location, day: date) -> set[tuple[str, str]]:
    """The (org, model) pairs that have rows in the published partition of `day`; empty when
    there is none. Reads only the two dictionary-encoded columns, so it is cheap."""
    location = root if isinstance(root, Location) else local_location(root)
    directory = location.join(DATASET_DIR, f"snapshot_date={day.isoformat()}")
    pairs: set[tuple[str, str]] = set()
    try:
        files = sorted(
            info.path
            for info in list_entries(location.filesystem, directory)
            if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
        )
        for path in files:
            table = pq.read_table(path, columns=["org", "model"], filesystem=location.filesystem)
            keys = table.group_by(["org", "model"]).aggregate([])
            pairs.update(
                zip(keys.column("org").to_pylist(), keys.column("model").to_pylist(), strict=True)
            )
    except STORAGE_ERRORS as exc:
        raise OutputError(
            f"cannot read the published partition {location.display(directory)}: {exc}"
        ) from exc
    return pairs
