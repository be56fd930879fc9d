"""Shared by the shard tests (local and s3://): `extract --shard K/N` and `publish --shards N`
through the CLI in-process, for one day."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result
from ground_truth import DAY1

from connector.cli import main


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def extract_shard(config: Path, shard: str, *args: str, day: str = DAY1) -> Result:
    return cli(
        "extract",
        "--config",
        str(config),
        "--date",
        day,
        "--allow-backdate",
        "--shard",
        shard,
        *args,
    )


def publish(config: Path, shards: int, *args: str, day: str = DAY1) -> Result:
    return cli("publish", "--config", str(config), "--date", day, "--shards", str(shards), *args)
