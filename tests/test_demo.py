"""`make demo` end to end: discovery with `models: ["*"]`, per-version detail over `versions`
as strings, and a report whose gains include versions other than the latest."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from connector import load_snapshots, report
from connector.simulator import demo


@pytest.mark.slow
def test_demo_discovers_every_model_and_reports_gains_for_old_versions(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "demo"
    assert demo.main(workdir) == 0
    config = yaml.safe_load((workdir / "demo.yaml").read_text())
    assert config["registry"]["version_detail"] == "missing"
    assert config["registry"]["auth_scheme"] == "api-key"  # the registry client's way
    assert all(org["models"] == ["*"] for org in config["orgs"])
    output = capfd.readouterr().out
    assert "by operation: getModelVersion: " in output and "listModels: 2" in output
    assert "snapshots  2 from 2026-01-01 to 2026-01-02" in output  # connector status
    assert "missing    no day between them" in output

    frame = load_snapshots(workdir / "dataset")
    assert len(frame) > 0 and frame["download_count"].notna().all()
    latest = set(
        zip(frame["org"], frame["model"], frame["version"], frame["is_latest"], strict=True)
    )
    gains = report(
        workdir / "dataset", start=date(2026, 1, 1), end=date(2026, 1, 2), by="version", top=None
    )
    old = [
        row
        for row in gains.itertuples()
        if (row.org, row.model, row.version, False) in latest and row.downloads_gained > 0
    ]
    assert old, "no version other than the latest gained downloads"
