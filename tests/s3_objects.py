"""The S3 side of the object-storage tests: a config that publishes to a bucket, and the
bucket's objects and dataset read back with the real readers (pyarrow's S3 filesystem, DuckDB).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from helpers import REPO, TOKEN, config_document

from connector.dataset.locate import open_store as locate
from connector.simulator.server import SimulatedRegistry

# Recognisable credentials: tests assert they appear in no output, log, summary or object.
S3_KEY_ID = "AKIAH5RECOGNISABLE77"
S3_SECRET = "h5SecretRecognisable-never-in-any-output"

DAY1, DAY2 = date(2026, 1, 1), date(2026, 1, 2)
ENV = {"MODEL_REGISTRY_TOKEN": TOKEN}


def s3_document(registry: SimulatedRegistry, uri: str, **output: Any) -> dict[str, Any]:
    """`config_document` with the output at `uri` (an s3:// URI) and extra output settings."""
    return config_document(registry, Path("unused"), output_settings={"uri": uri, **output})


def s3_environment(s3_server: Any, nowhere: Path) -> dict[str, str]:
    """The variables that point the AWS SDK at the test server, and at nothing else (no
    profile, no instance metadata): credentials and endpoint come from the environment, as in
    production."""
    return {
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_ENDPOINT_URL": s3_server.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(nowhere),
        "AWS_SHARED_CREDENTIALS_FILE": str(nowhere),
    }


def use_s3_environment(monkeypatch: pytest.MonkeyPatch, s3_server: Any, nowhere: Path) -> None:
    """Set `s3_environment` for the duration of `monkeypatch`, and unset what would override it."""
    for name, value in s3_environment(s3_server, nowhere).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def new_bucket(s3_server: Any) -> str:
    """A fresh, empty bucket on the test server."""
    bucket = f"bkt-{uuid.uuid4().hex[:12]}"
    endpoint = s3_server.url.removeprefix("http://")
    admin = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True)
    admin.create_dir(bucket)
    return bucket


def keys(bucket: str, under: str = "") -> dict[str, int]:
    """Every object under a prefix (path relative to the bucket) with its size."""
    fs = locate(f"s3://{bucket}").filesystem
    selector = pafs.FileSelector(
        f"{bucket}/{under}".rstrip("/"), recursive=True, allow_not_found=True
    )
    return {
        info.path.removeprefix(f"{bucket}/"): info.size
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
    }


def object_bytes(bucket: str, key: str) -> bytes:
    """The stored bytes of one object."""
    with locate(f"s3://{bucket}").filesystem.open_input_stream(f"{bucket}/{key}") as stream:
        return bytes(stream.read())


def duckdb_rows(bucket: str, prefix: str = "lake") -> list[dict[str, Any]]:
    """The dataset as DuckDB sees it through a pyarrow dataset on the S3 filesystem."""
    fs = locate(f"s3://{bucket}").filesystem
    dataset = ds.dataset(
        f"{bucket}/{prefix}/model_versions", filesystem=fs, format="parquet", partitioning="hive"
    )
    relation = duckdb.from_arrow(dataset).order("org, model, version_rank NULLS LAST, version")
    rows = [dict(zip(relation.columns, values, strict=True)) for values in relation.fetchall()]
    for row in rows:
        row["origin"] = json.loads(row["origin"]) if row["origin"] is not None else None
    return rows


def triples(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """(org, model, version, download_count) rows, sorted, with None for a missing count."""
    return sorted(
        (
            row.org,
            row.model,
            row.version,
            None if pd.isna(row.download_count) else int(row.download_count),
        )
        for row in frame.itertuples()
    )


def start_connector(*args: str) -> subprocess.Popen[bytes]:
    """`connector <args>` in its own process; the AWS settings come from the environment."""
    env = {**os.environ, "MODEL_REGISTRY_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "connector", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_when(server: Any, predicate: Callable[[dict[str, Any]], bool], *args: str) -> None:
    """Start `connector <args>` and SIGKILL it once it sends the request `predicate` matches
    (dropped: the store never sees it)."""
    gate = server.hold(predicate, drop=True)
    process = start_connector(*args)
    try:
        assert gate.arrived.wait(60), "the run never reached the held request"
        process.send_signal(signal.SIGKILL)
    finally:
        gate.release()
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
