"""What the readers (`connector report` and `load_snapshots`) accept and refuse in a dataset: a
file lacking a column every connector file has, or holding one with another type, is an error
naming the file and the column (never a column of nulls, never a silently wrong report), locally
and on object storage; older (v1) and newer (more columns at the end) files still read; a link
in a partition is refused, never followed; days are a `date` or `YYYY-MM-DD`."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from dataset_builders import V, file_table, upload, write_snapshot

import connector
from connector.cli import main
from connector.dataset.reader import BASE_COLUMNS, load_snapshots
from connector.dataset.schema import COLUMN_NAMES, SCHEMA_VERSION
from connector.errors import ConfigError, ExitCode, OutputError
from connector.reporting.analytics import compute_report, report

DAY1, DAY2, DAY3 = date(2024, 5, 1), date(2024, 5, 2), date(2024, 5, 3)
DAMAGED = f"model_versions/snapshot_date={DAY2}/part-00001.parquet"


def dataset(root: Path) -> None:
    """Three snapshots, two models; DAY2 has a second part file (the one tests damage)."""
    write_snapshot(root, DAY1, [V("acme", "a", "1", 10), V("acme", "b", "1", 5)])
    write_snapshot(root, DAY2, [V("acme", "a", "1", 20)])
    write_snapshot(root, DAY2, [V("acme", "b", "1", 8)], name="part-00001.parquet")
    write_snapshot(root, DAY3, [V("acme", "a", "1", 30), V("acme", "b", "1", 9)])


def replace_column(table: pa.Table, name: str, values: pa.Array | None) -> pa.Table:
    """The table with column `name` dropped (values None) or replaced by `values`."""
    index = table.schema.get_field_index(name)
    table = table.remove_column(index)
    return table if values is None else table.add_column(index, name, values)


Storage = Callable[[Path], Any]


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    """Where a dataset written locally is read from: in place, or uploaded to a bucket."""
    if request.param == "local":
        return lambda root: root
    bucket = request.getfixturevalue("s3_bucket")
    return lambda root: upload(root, bucket, "lake")


def shown(data: Any, relative: str) -> str:
    return f"{data}/{relative}" if isinstance(data, str) else str(data / relative)


READERS: dict[str, Callable[[Any], Any]] = {
    "report": lambda data: compute_report(data, days=2, by="version", top=None),
    "load_snapshots": lambda data: load_snapshots(data, columns=["org", "model", "download_count"]),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("column", "values", "problem"),
    [
        ("download_count", None, "has no column 'download_count'"),
        ("org", None, "has no column 'org'"),
        ("download_count", pa.array(["8"]), "column 'download_count' is string, expected int64"),
        ("download_count", pa.array([8.0]), "column 'download_count' is double, expected int64"),
        ("org", pa.array([7]), "column 'org' is int64, expected string"),
    ],
    ids=["no count", "no org", "count as text", "count as float", "org as number"],
)
def test_a_file_without_a_column_or_with_another_type_is_named(
    tmp_path: Path,
    storage: Storage,
    reader: str,
    column: str,
    values: pa.Array | None,
    problem: str,
) -> None:
    """Before, DuckDB's `union_by_name` and pyarrow's dataset schema read a missing column as
    nulls: the report then counted acme/b from its first observation, silently."""
    root = tmp_path / "data"
    dataset(root)
    table = pq.read_table(root / DAMAGED)
    pq.write_table(replace_column(table, column, values), root / DAMAGED)
    data = storage(root)
    with pytest.raises(OutputError) as raised:
        READERS[reader](data)
    assert f"{shown(data, DAMAGED)}" in str(raised.value)
    assert problem in str(raised.value)


def test_the_command_says_which_file_and_column_in_one_line(tmp_path: Path) -> None:
    dataset(tmp_path)
    table = pq.read_table(tmp_path / DAMAGED)
    pq.write_table(replace_column(table, "version", None), tmp_path / DAMAGED)
    result = CliRunner().invoke(main, ["report", "--data", str(tmp_path), "--days", "2"])
    assert result.exit_code == ExitCode.OUTPUT, result.output
    assert result.stderr == (
        f"Error: {tmp_path / DAMAGED} has no column 'version' (every file of the dataset has "
        "it): the file is damaged or was not written by the connector\n"
    )


def test_a_file_name_cannot_forge_a_line_of_the_error(tmp_path: Path) -> None:
    """A foreign writer chose the file's name: a newline in it is escaped, one Error line."""
    dataset(tmp_path)
    table = pq.read_table(tmp_path / DAMAGED)
    forged = tmp_path / f"model_versions/snapshot_date={DAY2}/x\nError: all fine.parquet"
    pq.write_table(replace_column(table, "download_count", None), forged)
    result = CliRunner().invoke(main, ["report", "--data", str(tmp_path), "--days", "2"])
    assert result.exit_code == ExitCode.OUTPUT, result.output
    assert result.stderr.count("\n") == 1
    assert "x\\nError: all fine.parquet has no column 'download_count'" in result.stderr


def test_the_base_columns_are_schema_v1_and_lead_the_schema() -> None:
    """Every file the connector wrote has schema v1's columns; later versions append."""
    assert SCHEMA_VERSION >= 2
    assert COLUMN_NAMES[: len(BASE_COLUMNS)] == BASE_COLUMNS
    assert "download_count" in BASE_COLUMNS and "license" not in BASE_COLUMNS


def test_older_and_newer_files_and_other_layouts_still_read(
    tmp_path: Path, storage: Storage
) -> None:
    """A v1 file (no detail columns), a file with a column the schema does not know yet at
    the end (as a later version adds), and one written with other layouts of the same types
    (large strings, a dictionary, a narrower integer, milliseconds in another time zone) read
    as the plain v2 dataset does."""
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    dataset(plain)
    dataset(mixed)
    v1 = pq.read_table(mixed / DAMAGED).drop_columns(["file_size_bytes", "license", "task", "tags"])
    pq.write_table(v1, mixed / DAMAGED)
    newer = pq.read_table(mixed / f"model_versions/snapshot_date={DAY1}/part-00000.parquet")
    newer = newer.append_column("stars", pa.array([4, 2], pa.int64()))
    pq.write_table(newer, mixed / f"model_versions/snapshot_date={DAY1}/part-00000.parquet")
    other = mixed / f"model_versions/snapshot_date={DAY3}/part-00000.parquet"
    table = pq.read_table(other)
    for name, kind in (
        ("org", pa.large_string()),
        ("version", pa.dictionary(pa.int8(), pa.string())),
        ("download_count", pa.int32()),
        ("created_at", pa.timestamp("ms", tz="Europe/Paris")),
    ):
        table = replace_column(table, name, table[name].cast(kind))
    pq.write_table(table, other)
    data = storage(mixed)
    for days in (1, 2):
        expected = compute_report(plain, days=days, by="version", top=None).table
        actual = compute_report(data, days=days, by="version", top=None).table
        assert actual.to_dict("records") == expected.to_dict("records")
    rows = load_snapshots(data)
    assert rows.equals(load_snapshots(plain))
    assert rows["license"].isna().all()


def test_a_newer_column_may_be_missing_but_never_mistyped(tmp_path: Path) -> None:
    """A column added after v1 is absent from older files (nulls), but where present its type
    must be the schema's."""
    dataset(tmp_path)
    table = pq.read_table(tmp_path / DAMAGED)
    pq.write_table(replace_column(table, "license", None), tmp_path / DAMAGED)
    assert load_snapshots(tmp_path, columns=["license"])["license"].isna().all()
    pq.write_table(replace_column(table, "license", pa.array([3])), tmp_path / DAMAGED)
    with pytest.raises(OutputError, match="column 'license' is int64, expected string"):
        load_snapshots(tmp_path, columns=["org", "license"])
    assert len(load_snapshots(tmp_path, columns=["org"])) == 6  # not asked for: not checked


LINK_READERS: dict[str, Callable[[Path], Any]] = {
    "report": lambda root: compute_report(root, days=2),
    "load_snapshots": load_snapshots,
}


@pytest.mark.parametrize("reader", LINK_READERS)
def test_a_link_in_a_partition_is_refused_not_followed(tmp_path: Path, reader: str) -> None:
    """A `*.parquet` link to a valid file elsewhere is never read (it would add rows the
    dataset does not hold): the read stops with an error naming the link, as the writer does
    for links in its layout. Skipping it with a warning was the alternative: a report missing
    rows, said only on stderr, is the silently wrong answer this refuses."""
    root = tmp_path / "data"
    dataset(root)
    elsewhere = tmp_path / "elsewhere.parquet"
    pq.write_table(file_table(DAY2, [V("evil", "x", "1", 10**9)]), elsewhere)
    link = root / f"model_versions/snapshot_date={DAY2}/part-00002.parquet"
    os.symlink(elsewhere, link)
    refused = f"{link} is a symbolic link; the dataset is read without following links"
    with pytest.raises(OutputError, match=refused):
        LINK_READERS[reader](root)
    link.unlink()
    os.symlink(tmp_path / "missing.parquet", link)  # a dangling link is refused the same way
    with pytest.raises(OutputError, match="is a symbolic link"):
        LINK_READERS[reader](root)


@pytest.mark.parametrize("reader", LINK_READERS)
def test_a_partition_that_is_a_link_is_refused(tmp_path: Path, reader: str) -> None:
    root = tmp_path / "data"
    dataset(root)
    partition = root / f"model_versions/snapshot_date={DAY2}"
    partition.rename(tmp_path / "moved")
    os.symlink(tmp_path / "moved", partition)
    with pytest.raises(OutputError, match=f"{partition} is a symbolic link"):
        LINK_READERS[reader](root)


def test_the_library_takes_days_as_dates_or_iso_strings(tmp_path: Path) -> None:
    """Airflow passes `ds` as text: every reader takes "YYYY-MM-DD" as it takes a date."""
    dataset(tmp_path)
    as_date = compute_report(tmp_path, start=DAY1, end=DAY2, by="version")
    as_text = compute_report(tmp_path, start="2024-05-01", end="2024-05-02", by="version")
    assert as_text.table.equals(as_date.table)
    assert (as_text.window.start, as_text.window.end) == (DAY1, DAY2)
    assert report(tmp_path, start="2024-05-02").equals(report(tmp_path, start=DAY2))
    assert connector.report(tmp_path, start=" 2024-05-01 ", end="2024-05-03").attrs["days"] == 2
    frame = load_snapshots(tmp_path, start="2024-05-02", end="2024-05-02")
    assert sorted(frame["snapshot_date"].dt.date.unique()) == [DAY2]
    assert load_snapshots(tmp_path, start=DAY2, end=DAY2).equals(frame)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda root: compute_report(root, start="2024-02-30"), "start: '2024-02-30' is not a day"),
        (lambda root: report(root, start="2024-05-01", end="May 3"), "end: expected a date or"),
        (lambda root: load_snapshots(root, start=20240501), "start: expected a date or"),
        (lambda root: load_snapshots(root, end="2024-5-1"), "end: expected a date or"),
    ],
    ids=["compute_report", "report", "load_snapshots start", "load_snapshots end"],
)
def test_a_day_that_is_not_one_is_a_config_error_naming_the_argument(
    tmp_path: Path, call: Callable[[Path], Any], message: str
) -> None:
    dataset(tmp_path)
    with pytest.raises(ConfigError, match=message):
        call(tmp_path)
