"""The Delta recipes of docs/querying.md, run exactly as written on a table the connector wrote
(`data/` in the working directory, three days and a re-run): every reader agrees with
`load_snapshots`, and time travel reads the first publish, not the re-run that replaced it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import TOKEN, config_document, docs_block

import connector
from connector.config import parse_config
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
KEYS = ["snapshot_date", "org", "model"]


def run_block(name: str) -> pd.DataFrame:
    """A docs block, as written; its `result` as pandas with plain column types."""
    namespace: dict[str, Any] = {}
    exec(compile(docs_block(name), f"docs/querying.md ({name})", "exec"), namespace)
    result = namespace["result"]
    frame = result if isinstance(result, pd.DataFrame) else result.to_pandas()
    frame["snapshot_date"] = pd.to_datetime(frame["snapshot_date"]).dt.date
    return frame.sort_values(KEYS, ignore_index=True)


@pytest.fixture
def table(start_simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    registry = start_simulator(orgs=2, models_per_org=2, versions_shape="objects")
    document = config_document(registry, tmp_path / "data", output_settings={"format": "delta"})
    config = parse_config(document, {"MODEL_REGISTRY_TOKEN": TOKEN})
    for sim_day, day in ((1, 1), (2, 2), (3, 3), (7, 1)):  # the last one re-runs day one
        registry.set_day(sim_day)
        summary = connector.extract(config, date(2026, 1, day), allow_backdate=True)
        assert summary.exit_code == 0, summary.render_text()
    monkeypatch.chdir(tmp_path)
    return registry


def expected() -> pd.DataFrame:
    rows = connector.load_snapshots("data", columns=[*KEYS, "download_count"])
    rows["snapshot_date"] = rows["snapshot_date"].dt.date
    return (
        rows.groupby(KEYS)
        .agg(versions=("download_count", "size"), downloads=("download_count", "sum"))
        .reset_index()
        .sort_values(KEYS, ignore_index=True)
    )


@pytest.mark.parametrize("name", ["delta-polars", "delta-pandas", "delta-duckdb"])
def test_each_reader_reads_the_current_version(table: Any, name: str) -> None:
    result = run_block(name)
    want = expected()
    assert len(want) == 3 * 4  # three days of four models: the re-run replaced day one
    assert result[KEYS].values.tolist() == want[KEYS].values.tolist()
    assert result["versions"].astype(int).tolist() == want["versions"].astype(int).tolist()
    assert result["downloads"].astype(int).tolist() == want["downloads"].astype(int).tolist()


def test_time_travel_reads_the_table_as_it_was(table: SimulatedRegistry) -> None:
    result = run_block("delta-time-travel")  # the table at its first commit's time
    assert set(result["snapshot_date"]) == {date(2026, 1, 1)}
    got = sorted(
        zip(
            result["org"], result["model"], result["version"], result["download_count"], strict=True
        )
    )
    want = sorted(
        (r["org"], r["model"], r["version"], r["download_count"]) for r in table.expected_rows(1)
    )
    assert got == want
    assert want != sorted(
        (r["org"], r["model"], r["version"], r["download_count"]) for r in table.expected_rows(7)
    )
