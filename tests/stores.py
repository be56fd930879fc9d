"""Store-generic test helpers: what a store holds, read back through the store itself."""

from __future__ import annotations

from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connector.dataset.store import Store


def tree(store: Store, path: str = "") -> dict[str, bytes]:
    """Every file under `path` (store paths relative to the root) with its bytes; links and
    directories are walked, never followed (a local link is listed as `<link>`)."""
    found: dict[str, bytes] = {}
    for entry in store.list(path):
        child = f"{path}/{entry.name}" if path else entry.name
        if entry.kind == "dir":
            found.update(tree(store, child))
        elif entry.kind == "file":
            data = store.get(child, limit=1 << 30)
            assert data is not None
            found[child] = data
        else:
            found[child] = f"<{entry.kind}>".encode()
    return found


def parquet_rows(store: Store, path: str) -> pa.Table:
    """The table in one Parquet file of the store."""
    with store.filesystem.open_input_file(store.native(path)) as handle:
        return pq.read_table(handle)


def version_rows(count: int, model: str = "m", start: int = 0) -> list[dict[str, Any]]:
    """`count` versions of acme/`model` by column name; the columns not named are null."""
    return [
        {
            "extracted_at": 0,
            "org": "acme",
            "model": model,
            "model_name": f"acme/{model}",
            "version": f"1.0.{i}",
            "version_rank": i + 1,
            "is_latest": i == start,
            "download_count": i,
        }
        for i in range(start, start + count)
    ]


DAY = date(2026, 3, 1)


def copy_tree(source: Store, target: Store, path: str = "") -> None:
    """Copy every file under `path` of `source` to the same path of `target`, byte for byte (a
    fresh copy of a built dataset for a test that changes it; the datasets hold no links)."""
    for entry in source.list(path):
        child = f"{path}/{entry.name}" if path else entry.name
        if entry.kind == "dir":
            copy_tree(source, target, child)
        else:
            assert entry.kind == "file", f"{child} is a {entry.kind}"
            data = source.get(child, limit=1 << 30)
            assert data is not None
            target.put(child, data)
