"""What only object storage has, against a real S3 API (moto's server on 127.0.0.1, started by
the fixtures): endpoints and storage options, and credential hygiene. What a run does on any
store is in test_runs_on_stores.py, the store contract in test_store.py, leases in
test_locks.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import write_config
from s3_objects import (
    ENV,
    S3_KEY_ID,
    S3_SECRET,
    keys,
    object_bytes,
    s3_document,
)

from connector.cli import main
from connector.config import parse_config
from connector.dataset.locate import open_store as locate
from connector.errors import ConfigError, ExitCode
from connector.simulator.server import FaultPlan, SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]


def test_credentials_never_appear_in_output_logs_or_objects(
    start_simulator: StartSimulator, s3_bucket: str, token_env: str, tmp_path: Path
) -> None:
    registry = start_simulator(orgs=1, models_per_org=3)
    org, model = registry.targets()[0]
    registry.set_faults(FaultPlan(malformed={f"{org}/{model}": "invalid_json"}))
    uri = f"s3://{s3_bucket}/lake"
    config = write_config(tmp_path / "c.yaml", s3_document(registry, uri, min_success_ratio=0.5))
    runner = CliRunner()
    outputs = [
        runner.invoke(
            main,
            [
                "extract",
                "--config",
                str(config),
                "--date",
                "2026-01-01",
                "--allow-backdate",
                "--log-level",
                "DEBUG",
                "--summary-format",
                "json",
                "--metrics-file",
                str(tmp_path / "m.prom"),
            ],
        ),
        runner.invoke(
            main, ["extract", "--config", str(config), "--date", "2026-01-02", "--allow-backdate"]
        ),
        runner.invoke(main, ["report", "--data", uri, "--format", "json"]),
        # A failure naming the store: a bucket that does not exist.
        runner.invoke(main, ["extract", "--config", str(config), "--output", "s3://no-such-bkt/x"]),
        runner.invoke(main, ["report", "--data", "s3://no-such-bkt/x"]),
    ]
    assert [r.exit_code for r in outputs[:3]] == [ExitCode.PARTIAL, ExitCode.PARTIAL, 0]
    assert outputs[3].exit_code == ExitCode.OUTPUT and "no-such-bkt" in outputs[3].output
    assert outputs[4].exit_code != 0 and "no-such-bkt" in outputs[4].output
    texts = [r.output for r in outputs] + [(tmp_path / "m.prom").read_text()]
    texts += [object_bytes(s3_bucket, key).decode("utf-8", "replace") for key in keys(s3_bucket)]
    for text in texts:
        assert S3_KEY_ID not in text and S3_SECRET not in text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"aws_secret_access_key": "x"}, "credentials never go in the config file"),
        ({"access_key": "x", "region": "eu-west-1"}, "credentials never go in the config file"),
        ({"session_token": "x"}, "credentials never go in the config file"),
        ({"endpoint_url": "http://user:pw@127.0.0.1:9000"}, "must not carry user:password@"),
        ({"endpoint_url": "ftp://127.0.0.1"}, "must be an http:// or https:// URL"),
        ({"addressing_style": "sideways"}, "Input should be 'path' or 'virtual'"),
        ({"bucket_acl": "private"}, "unknown key"),
    ],
)
def test_storage_options_refuse_secrets_and_unknown_settings(
    options: dict[str, str], message: str, start_simulator: StartSimulator
) -> None:
    registry = start_simulator()
    document = s3_document(registry, "s3://bkt/lake", storage_options=options)
    with pytest.raises(ConfigError) as caught:
        parse_config(document, ENV)
    text = str(caught.value)
    assert "output.storage_options" in text and message in text
    assert "pw@" not in text  # the value itself is never echoed


@pytest.mark.parametrize(
    ("uri", "options", "message"),
    [
        ("./data", {"region": "eu-west-1"}, "storage_options only apply to an s3:// uri"),
        ("s3://KEY:SECRET@bkt/lake", None, "must not carry user@"),
        ("s3://B/lake", None, "valid bucket name"),
        ("s3://bkt/lake?versionId=1", None, "must not carry a query string"),
    ],
)
def test_output_uri_for_object_storage_is_validated(
    uri: str, options: dict[str, str] | None, message: str, start_simulator: StartSimulator
) -> None:
    registry = start_simulator()
    extra = {"storage_options": options} if options else {}
    with pytest.raises(ConfigError) as caught:
        parse_config(s3_document(registry, uri, **extra), ENV)
    assert message in str(caught.value) and "SECRET" not in str(caught.value)


def test_storage_options_reach_the_filesystem(s3_bucket: str) -> None:
    options = {"region": "eu-west-3", "addressing_style": "path", "connect_timeout_seconds": 2.5}
    fs = locate(f"s3://{s3_bucket}/lake", options).filesystem
    assert fs.region == "eu-west-3"
    with pytest.raises(ConfigError, match="only apply to s3://"):
        locate("/tmp/data", {"region": "eu-west-3"})
