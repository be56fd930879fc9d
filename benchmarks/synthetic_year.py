"""A synthetic year of snapshots for the report benchmark, written once and reused.

365 daily partitions in the published layout (one zstd part file and a manifest each, the
extractor's schema and dictionary columns): 50 orgs x 10 models, each model with 100 versions
from before the year and 10 more released during it (created on the day they first appear), so
50,000 to 55,000 rows a day, about 19 M in all. Counts grow every day; 1 % of the versions are
listed without a count (null), and 0.2 % dip once and recover, as real counters sometimes do.
Deterministic (a fixed seed), so `matches` can tell a cached copy from a stale one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connector.dataset.schema import DICTIONARY_COLUMNS, FILE_SCHEMA

STAMP = "_synthetic_year.json"


@dataclass(frozen=True)
class Shape:
    """What a synthetic dataset holds; stored next to it to recognise a reusable copy."""

    first_day: str = "2025-01-01"
    days: int = 365
    orgs: int = 50
    models_per_org: int = 10
    old_versions: int = 100
    new_versions: int = 10
    seed: int = 20261202
    generator: int = 1  # bump when the content changes

    @property
    def models(self) -> int:
        return self.orgs * self.models_per_org


def matches(root: Path, shape: Shape) -> bool:
    """True when `root` holds a complete dataset written for exactly this shape."""
    stamp = root / STAMP
    try:
        return bool(json.loads(stamp.read_text(encoding="utf-8")) == asdict(shape))
    except (OSError, ValueError):
        return False


def _versions(shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One entry per version slot: its model, name, first day, count curve and quirks."""
    per_model = shape.old_versions + shape.new_versions
    total = shape.models * per_model
    model = np.repeat(np.arange(shape.models), per_model)
    slot = np.tile(np.arange(per_model), shape.models)
    appears = np.where(
        slot < shape.old_versions, 0, rng.integers(1, shape.days, size=total)
    ).astype(np.int64)
    return {
        "model": model,
        "slot": slot,
        "appears": appears,
        "base": np.where(appears == 0, rng.integers(0, 5_000_000, size=total), 0),
        "rate": rng.integers(0, 20_000, size=total),
        "unknown": rng.random(total) < 0.01,
        "dip_day": np.where(rng.random(total) < 0.002, rng.integers(1, shape.days, size=total), -1),
        "framework": rng.integers(0, 4, size=total),
    }


def _day_table(shape: Shape, slots: dict[str, np.ndarray], index: int, day: date) -> pa.Table:
    present = slots["appears"] <= index
    model = slots["model"][present]
    slot = slots["slot"][present]
    age = index - slots["appears"][present]
    counts = slots["base"][present] + slots["rate"][present] * age
    counts = np.where(slots["dip_day"][present] == index, counts // 2, counts)
    org_names = np.array([f"org-{n:03d}" for n in range(shape.orgs)], dtype=object)
    model_names = np.array([f"model-{n:04d}" for n in range(shape.models)], dtype=object)
    version_names = np.array(
        [f"{n // 10}.{n % 10}.0" for n in range(shape.old_versions + shape.new_versions)],
        dtype=object,
    )
    frameworks = np.array(["pytorch", "onnx", "jax", "tensorflow"], dtype=object)
    orgs = org_names[model // shape.models_per_org]
    models = model_names[model]
    first = datetime.fromisoformat(shape.first_day).replace(tzinfo=UTC)
    created = np.where(
        slots["appears"][present] == 0,
        np.datetime64(first.replace(tzinfo=None) - timedelta(days=400), "us"),
        np.datetime64(first.replace(tzinfo=None), "us")
        + slots["appears"][present] * np.timedelta64(86_400, "s"),
    )
    rows = len(model)
    fetched = datetime(day.year, day.month, day.day, 3, 15, tzinfo=UTC)
    rank = (shape.old_versions + shape.new_versions) - slot
    columns = {
        "extracted_at": pa.array(np.full(rows, np.datetime64(fetched.replace(tzinfo=None), "us"))),
        "org": pa.array(orgs, pa.string()),
        "model": pa.array(models, pa.string()),
        "model_name": pa.array(orgs + "/" + models, pa.string()),
        "version": pa.array(version_names[slot], pa.string()),
        "version_rank": pa.array(rank.astype(np.int32)),
        "is_latest": pa.array(rank == rank.min() if rows else np.zeros(0, bool)),
        "artifact_id": pa.nulls(rows, pa.string()),
        "created_at": pa.array(created.astype("datetime64[us]")),
        "download_count": pa.array(counts, mask=slots["unknown"][present]),
        "framework": pa.array(frameworks[slots["framework"][present]], pa.string()),
        "is_public": pa.array(np.ones(rows, bool)),
    }
    arrays = [
        columns[name].cast(FILE_SCHEMA.field(name).type)
        if name in columns
        else pa.nulls(rows, FILE_SCHEMA.field(name).type)
        for name in FILE_SCHEMA.names
    ]
    return pa.Table.from_arrays(arrays, schema=FILE_SCHEMA)


def write_year(root: Path, shape: Shape = Shape()) -> int:
    """Write the dataset under `root` (replacing what is there); returns the number of rows."""
    rng = np.random.default_rng(shape.seed)
    slots = _versions(shape, rng)
    (root / STAMP).unlink(missing_ok=True)
    first = date.fromisoformat(shape.first_day)
    total = 0
    for index in range(shape.days):
        day = first + timedelta(days=index)
        partition = root / "model_versions" / f"snapshot_date={day.isoformat()}"
        partition.mkdir(parents=True, exist_ok=True)
        for stale in partition.glob("*.parquet"):
            stale.unlink()
        table = _day_table(shape, slots, index, day)
        name = "part-synthetic-00000.parquet"
        pq.write_table(
            table,
            partition / name,
            compression="zstd",
            use_dictionary=DICTIONARY_COLUMNS,
            row_group_size=16384,
        )
        manifest = {"snapshot_date": day.isoformat(), "rows": table.num_rows, "files": [name]}
        manifest["failures"] = []
        (partition / "_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        total += table.num_rows
    (root / STAMP).write_text(json.dumps(asdict(shape)), encoding="utf-8")
    return total


def last_day(shape: Shape) -> date:
    """The newest snapshot date of the dataset."""
    return date.fromisoformat(shape.first_day) + timedelta(days=shape.days - 1)
