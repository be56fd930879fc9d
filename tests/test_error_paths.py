"""Every user-caused error is one `Error:` line with its exit code, never a traceback; a
published outcome survives what goes wrong after the publish."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from dataset_builders import V, write_snapshot
from helpers import VALID_BODY, ScriptedServer, config_document, json_reply
from helpers import write_config as write_yaml

import connector.cli.simulate
from connector.cli import main
from connector.errors import ConfigError, ExitCode
from connector.reporting.analytics import compute_report
from connector.simulator.faults import Reply
from connector.simulator.server import SimulatedRegistry

StartSimulator = Callable[..., SimulatedRegistry]
TODAY = datetime.now(UTC).date().isoformat()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_clean_error(result: Result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for word in words:
        assert word in result.output


@pytest.fixture
def config(start_simulator: StartSimulator, tmp_path: Path, token_env: str) -> Path:
    registry = start_simulator(orgs=1, models_per_org=2)
    return write_yaml(tmp_path / "c.yaml", config_document(registry, tmp_path / "out"))


def test_an_unwritable_metrics_file_warns_and_keeps_the_published_outcome(
    config: Path, tmp_path: Path
) -> None:
    target = tmp_path / "nonexistent" / "dir" / "m.prom"
    result = invoke("extract", "--config", str(config), "--metrics-file", str(target))
    assert_clean_error(result, ExitCode.OK, "Warning: could not write the metrics file")
    assert "outcome: ok (exit 0)" in result.stdout  # the summary is printed
    assert "published " in result.stdout


def test_a_metrics_file_that_is_a_directory_is_refused_before_the_run(
    config: Path, tmp_path: Path
) -> None:
    target = tmp_path / "m.prom"
    target.mkdir()
    result = invoke("extract", "--config", str(config), "--metrics-file", str(target))
    assert_clean_error(result, ExitCode.CONFIG, "is a directory")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "value", ["0001-01-01", "9999-12-31", "2026-W01-1", "20261101", "2026-02-30", "1999-12-31"]
)
def test_dates_that_cannot_be_meant_are_refused(value: str, config: Path) -> None:
    result = invoke("extract", "--config", str(config), "--date", value)
    assert_clean_error(result, ExitCode.CONFIG, "--date")


def test_the_day_after_tomorrow_is_outside_the_sane_range(config: Path) -> None:
    later = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
    assert_clean_error(invoke("validate", "--config", str(config)), ExitCode.OK)
    result = invoke("extract", "--config", str(config), "--date", later)
    assert_clean_error(result, ExitCode.CONFIG, "is outside 2000-01-01..")


def _bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("directory", "is a directory"),
        ("latin-1", "is not UTF-8"),
        ("fifo", "not a regular file"),
        ("dev-zero", "not a regular file"),
        ("huge", "is larger than"),
        ("alias-bomb", "alias bomb"),
        ("deep", "nested too deeply"),
    ],
)
def test_configs_that_are_not_config_files_exit_2(kind: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "latin-1":
        path.write_bytes("registry:\n  base_url: http://caf\xe9\n".encode("latin-1"))
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: a plain open() would block forever
    elif kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "huge":
        path.write_text("# " + "x" * (2 * 1024 * 1024))
    elif kind == "alias-bomb":
        path.write_text(_bomb())
    else:  # deeper than Python's stack allows (each level costs the parser a frame or more)
        path.write_text("[" * sys.getrecursionlimit())
    for command in ("validate", "extract"):
        result = invoke(command, "--config", str(path))
        assert_clean_error(result, ExitCode.CONFIG, words)
        if "problem(s) in" in result.stderr:  # (click itself refuses a directory)
            assert "\n  " in result.stderr  # each problem on its own line
        assert "\\n" not in result.stderr


def test_output_uri_expands_the_home_directory(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    result = invoke("extract", "--config", str(config), "--output", "~/data")
    assert_clean_error(result, ExitCode.OK)
    assert (home / "data" / "model_versions").is_dir()
    assert not (tmp_path / "~").exists()


def test_a_file_uri_naming_another_host_is_refused(config: Path) -> None:
    result = invoke("extract", "--config", str(config), "--output", "file://otherhost/p")
    assert_clean_error(result, ExitCode.CONFIG, "names another host")
    assert not Path("/p").exists()


def test_hostile_server_text_is_escaped_and_the_outcome_survives(
    tmp_path: Path, token_env: str
) -> None:
    detail = "gone \\ud800 \\n2026-01-01 ERROR forged line \\u001b[31mred\\u001b[0m"
    hostile = Reply(
        404,
        ('{"code": 404, "type": "not_found", "detail": "' + detail + '"}').encode(),
    )
    with ScriptedServer([hostile, json_reply(200, VALID_BODY)]) as server:
        document = config_document(
            server,  # type: ignore[arg-type]
            tmp_path / "out",
            orgs=[{"name": "acme", "models": ["a", "m"]}],
            registry_settings={"concurrency": 1},
            output_settings={"min_success_ratio": 0.5},
        )
        config = write_yaml(tmp_path / "c.yaml", document)
        result = invoke("extract", "--config", str(config))
    assert_clean_error(result, ExitCode.PARTIAL, "published ")
    assert "\x1b" not in result.output and "\ud800" not in result.output
    assert "\\ud800" in result.stdout and "\\x1b[31m" in result.stdout
    forged = [line for line in result.output.splitlines() if line.startswith("2026-01-01 ERROR")]
    assert forged == []


# Values no option should take badly: empty, negative, absurdly large (which once overflowed
# `timedelta` in `report --days`), not a number, not a finite number, dates at the calendar's
# ends, terminal control sequences and line breaks (which an `Error:` line must not pass on).
BAD_VALUES = [
    "",
    "-1",
    "0",
    "not-a-value",
    "999999999",
    "99999999999999999999",
    "-99999999999999999999",
    "1e309",
    "nan",
    "inf",
    "9999-12-31",
    "0001-01-01",
    "\x1b[2J\x1b[31mred",
    "a\nError: forged",
    "\x00",
]
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _walk() -> list[tuple[str, str]]:
    context = click.Context(main)
    found = []
    for name in main.list_commands(context):
        command = main.get_command(context, name)
        assert command is not None
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag:
                found.append((name, param.opts[-1]))
    return found


def test_the_walk_reaches_every_numeric_and_date_option() -> None:
    """The walk below must see the options whose values once crashed (a new one is walked the
    same way without being named anywhere)."""
    walked = set(_walk())
    for pair in [("report", "--days"), ("report", "--top"), ("report", "--start")]:
        assert pair in walked
    assert ("extract", "--min-success-ratio") in walked and ("publish", "--shards") in walked


@pytest.fixture
def report_data(tmp_path: Path) -> Path:
    """Two snapshots, so that a report's window options are really used, not refused early."""
    root = tmp_path / "data"
    write_snapshot(root, "2026-01-01", [V("acme", "m", "1.0", 5)])
    write_snapshot(root, "2026-01-03", [V("acme", "m", "1.0", 9)])
    return root


@pytest.mark.parametrize(("command", "option"), _walk())
def test_every_option_with_bad_values_gives_an_error_not_a_traceback(
    command: str,
    option: str,
    config: Path,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever value an option gets, the command either does its job or says why not: exit 2
    for a value it refuses, with exactly one `Error:` line and nothing a terminal would act on;
    never a traceback or an internal error."""
    monkeypatch.chdir(tmp_path)  # `--output -1` is a relative path that does get written
    # `simulate` would serve until stopped once its options parse: only the parsing is tested.
    monkeypatch.setattr(connector.cli.simulate, "serve_forever_cli", lambda _: None)
    base = {
        "extract": ["--config", str(config)],
        "publish": ["--config", str(config), "--date", TODAY, "--shards", "2"],
        "validate": ["--config", str(config)],
        "simulate": [],
    }.get(command, ["--config", str(config)])  # a new command: give it a config
    if command == "report":  # two snapshots, written only for the options that read them
        base = ["--data", str(request.getfixturevalue("report_data"))]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    values = [*BAD_VALUES, str(tmp_path), str(blocked / "x")]  # a directory; an impossible path
    for value in values:
        arguments = list(base)
        if option in arguments:
            index = arguments.index(option)
            del arguments[index : index + 2]
        result = invoke(command, *arguments, option, value)
        where = (command, option, value, result.output)
        assert "Traceback" not in result.output, where
        assert result.exit_code != ExitCode.INTERNAL, where
        assert result.exception is None or isinstance(result.exception, SystemExit), where
        if result.exit_code == ExitCode.CONFIG:
            errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1, where
            assert not RAW_CONTROL.search(result.output), where


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--days", "999999999"], "--days"),
        (["--days", "99999999999999999999"], "--days"),
        (["--memory-limit", "99999999999999999999"], "more than this machine's"),
        (["--memory-limit", "9" * 400 + "GiB"], "more than this machine's"),
        (["--memory-limit", "400%"], "more than this machine's"),
        (["-o", ""], "names a directory, not a file"),
        (["--storage-option", "endpoint_url"], "expected KEY=VALUE"),
    ],
)
def test_out_of_range_report_options_are_one_error_line(
    args: list[str], words: str, report_data: Path
) -> None:
    result = invoke("report", "--data", str(report_data), *args)
    assert_clean_error(result, ExitCode.CONFIG, words)
    assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1


@pytest.mark.parametrize("days", [0, 36_601, 999_999_999, 10**20])
def test_the_library_refuses_an_absurd_window_by_name(days: int, report_data: Path) -> None:
    """The same bound as `--days`, for `compute_report`: a ConfigError naming `days`, never an
    OverflowError out of the date arithmetic."""
    with pytest.raises(ConfigError, match="days must be at least 1 and at most 36600"):
        compute_report(report_data, days=days)
    assert compute_report(report_data, days=36_600).window.start.isoformat() == "2026-01-01"


@pytest.mark.parametrize("command", ["extract", "publish"])
@pytest.mark.parametrize("value", ["nan", "NaN", "-0.1", "1.5", "inf"])
def test_a_success_ratio_that_is_not_a_share_is_refused(
    command: str, value: str, config: Path, tmp_path: Path
) -> None:
    """`nan` passes a range check (every comparison with it is false) and then every publish
    guard: it must be refused like any other value outside 0..1, before anything runs."""
    extra = ["--date", TODAY, "--shards", "2"] if command == "publish" else []
    result = invoke(command, "--config", str(config), *extra, "--min-success-ratio", value)
    assert_clean_error(result, ExitCode.CONFIG, "--min-success-ratio")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--start", "--end"])
@pytest.mark.parametrize("value", ["1999-12-31", "9999-12-31", "20261101", "2026-02-30"])
def test_report_dates_share_the_sane_range_of_extract(
    option: str, value: str, tmp_path: Path
) -> None:
    """`report --start/--end` take the same day type as `extract --date`: a year-9999 end or
    a compact 20261101 is refused up front, naming the option, instead of reaching the query."""
    args = ["report", "--data", str(tmp_path), "--start", "2026-01-01", option, value]
    assert_clean_error(invoke(*args), ExitCode.CONFIG, option)
