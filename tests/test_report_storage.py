"""`report --data s3://...` reaches the store the config names: `--config` (its
output.storage_options) and `--storage-option KEY=VALUE` apply to `--data`, the option winning
per key; a host that does not resolve is an error naming AWS_ENDPOINT_URL. Against moto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import TOKEN, write_config
from s3_objects import (
    DAY1,
    DAY2,
    ENV,
    S3_KEY_ID,
    S3_SECRET,
    new_bucket,
    s3_document,
    use_s3_environment,
)

import connector
from connector import extract
from connector.cli import main
from connector.config import parse_config
from connector.errors import ExitCode
from connector.simulator.server import SimulatedRegistry, SimulatorConfig

NOWHERE = "http://no-such-host.invalid:9000"  # .invalid never resolves (RFC 6761)


@pytest.fixture(scope="module")
def built_lake(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two snapshots in a bucket, extracted once for the module (every test only reads them),
    and the report read with the endpoint from the environment (the reference)."""
    registry = SimulatedRegistry(SimulatorConfig(token=TOKEN, orgs=1, models_per_org=3)).start()
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_s3_environment(monkeypatch, s3_server, tmp_path_factory.mktemp("aws") / "none")
        uri = f"s3://{new_bucket(s3_server)}/lake"
        config = parse_config(s3_document(registry, uri), ENV)
        try:
            assert extract(config, DAY1, allow_backdate=True).exit_code == ExitCode.OK
            registry.set_day(2)
            assert extract(config, DAY2, allow_backdate=True).exit_code == ExitCode.OK
        finally:
            registry.stop()
        expected = report("--data", uri)
    assert expected.exit_code == 0, expected.output
    return {"uri": uri, "rows": json.loads(expected.stdout), "reg": registry}


@pytest.fixture
def lake(
    built_lake: dict[str, Any],
    s3_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The module's two snapshots, with the credentials in the environment but not the
    endpoint: each test says where the store is in its own way."""
    use_s3_environment(monkeypatch, s3_server, tmp_path_factory.mktemp("aws") / "none")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    return {**built_lake, "endpoint": s3_server.url}


def report(*args: str) -> Result:
    return CliRunner().invoke(main, ["report", "--format", "json", *args])


def test_storage_option_gives_data_its_endpoint(lake: dict[str, Any]) -> None:
    result = report("--data", lake["uri"], "--storage-option", f"endpoint_url={lake['endpoint']}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == lake["rows"]


def test_the_config_gives_data_its_endpoint(lake: dict[str, Any], tmp_path: Path) -> None:
    """--data wins for the location, the config's storage_options still apply to it."""
    other = lake["uri"].replace("/lake", "/elsewhere")
    document = s3_document(lake["reg"], other, storage_options={"endpoint_url": lake["endpoint"]})
    config = write_config(tmp_path / "c.yaml", document)
    result = report("--data", lake["uri"], "--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == lake["rows"]


def test_the_config_alone_gives_its_output_and_endpoint(
    lake: dict[str, Any], tmp_path: Path
) -> None:
    """`report --config` with neither --data nor AWS_ENDPOINT_URL: the config's output.uri
    and output.storage_options.endpoint_url say where the dataset is."""
    document = s3_document(
        lake["reg"], lake["uri"], storage_options={"endpoint_url": lake["endpoint"]}
    )
    config = write_config(tmp_path / "c.yaml", document)
    result = report("--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == lake["rows"]


def test_a_storage_option_wins_over_the_config(lake: dict[str, Any], tmp_path: Path) -> None:
    document = s3_document(lake["reg"], lake["uri"], storage_options={"endpoint_url": NOWHERE})
    config = write_config(tmp_path / "c.yaml", document)
    option = f"endpoint_url={lake['endpoint']}"
    result = report("--config", str(config), "--storage-option", option)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == lake["rows"]


@pytest.mark.parametrize("where", ["environment", "option"])
def test_a_host_that_does_not_resolve_names_aws_endpoint_url(
    where: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--data", f"s3://{s3_bucket}/lake"]
    if where == "environment":
        monkeypatch.setenv("AWS_ENDPOINT_URL", NOWHERE)
    else:
        args += ["--storage-option", f"endpoint_url={NOWHERE}"]
    result = CliRunner().invoke(main, ["report", *args])
    assert result.exit_code == ExitCode.OUTPUT, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert "no-such-host.invalid" in error
    assert "name your S3 service with AWS_ENDPOINT_URL" in error
    assert "output.storage_options.endpoint_url" in error
    assert S3_KEY_ID not in result.output and S3_SECRET not in result.output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("bucket_acl=private", "--storage-option bucket_acl: unknown key"),
        ("aws_secret_access_key=x", "credentials never go in the config file"),
        ("endpoint_url=ftp://127.0.0.1", "--storage-option endpoint_url: must be an http://"),
        ("addressing_style=sideways", "--storage-option addressing_style: Input should be"),
        ("=x", "expected KEY=VALUE"),
    ],
)
def test_bad_storage_options_are_one_error_line(option: str, message: str) -> None:
    """Refused before anything is read (no store is even needed)."""
    result = report("--data", "s3://bucket-name/lake", "--storage-option", option)
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_storage_options_do_not_apply_to_a_local_dataset(tmp_path: Path) -> None:
    result = report("--data", str(tmp_path), "--storage-option", "region=eu-west-1")
    assert result.exit_code == ExitCode.CONFIG
    assert "--storage-option only applies to an s3:// dataset" in result.stderr


def test_the_library_takes_the_storage_options_too(lake: dict[str, Any], tmp_path: Path) -> None:
    """What the sample DAG's weekly report does: the config's output settings, public API only."""
    options = {"endpoint_url": lake["endpoint"]}
    result = connector.compute_report(lake["uri"], storage_options=options)
    assert connector.report(lake["uri"], storage_options=options).equals(result.table)
    page = tmp_path / "weekly.html"
    connector.write_report(result, page, "html")
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(connector.NoDataError):
        connector.compute_report(lake["uri"] + "-empty", storage_options=options)


def test_a_bad_data_uri_names_the_option() -> None:
    result = report("--data", "s3://Not_A_Bucket/lake")
    assert result.exit_code == ExitCode.CONFIG
    assert "--data: must be s3://bucket[/prefix] with a valid bucket name" in result.stderr
