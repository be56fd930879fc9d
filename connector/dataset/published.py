"""What a published partition holds, read back for the half-config guard."""

from __future__ import annotations

from datetime import date

import pyarrow.parquet as pq

from connector.dataset.reader import data_files
from connector.dataset.store import STORAGE_ERRORS, Store
from connector.errors import OutputError


def published_targets(store: Store, day: date) -> set[tuple[str, str]]:
    """The (org, model) pairs that have rows in the published partition of `day`; empty when
    there is none. Reads only the two dictionary-encoded columns, so it is cheap."""
    pairs: set[tuple[str, str]] = set()
    for file in data_files(store, [day]):
        try:
            with store.filesystem.open_input_file(store.native(file.path)) as handle:
                table = pq.read_table(handle, columns=["org", "model"])
        except STORAGE_ERRORS as exc:
            raise OutputError(
                f"cannot read the published partition file {store.display(file.path)}: {exc}"
            ) from exc
        keys = table.group_by(["org", "model"]).aggregate([])
        pairs.update(
            zip(keys.column("org").to_pylist(), keys.column("model").to_pylist(), strict=True)
        )
    return pairs
