"""Every user-caused error is one `Error:` line with its exit code, never a traceback; a
published outcome survives what goes wrong after the publish."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from helpers import VALID_BODY, ScriptedServer, config_document, json_reply
from helpers import write_config as write_yaml

import connector.cli.simulate
from connector.cli import main
from connector.errors import ExitCode
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
    else:
        path.write_text("[" * 50_000)
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


BAD_VALUES = ["", "-1", "not-a-value", "99999999999999999999", "/nonexistent/dir/x", "\x00"]


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


@pytest.mark.parametrize(("command", "option"), _walk())
def test_every_option_with_bad_values_gives_an_error_not_a_traceback(
    command: str,
    option: str,
    config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # `--output -1` is a relative path that does get written
    # `simulate` would serve until stopped once its options parse: only the parsing is tested.
    monkeypatch.setattr(connector.cli.simulate, "serve_forever_cli", lambda _: None)
    base = {
        "extract": ["--config", str(config)],
        "publish": ["--config", str(config), "--date", TODAY, "--shards", "2"],
        "report": ["--data", str(tmp_path / "out")],
        "validate": ["--config", str(config)],
        "simulate": [],
    }.get(command, ["--config", str(config)])  # a new command: give it a config
    values = [*BAD_VALUES, str(tmp_path)]  # a directory where a file may be expected
    for value in values:
        arguments = list(base)
        if option in arguments:
            index = arguments.index(option)
            del arguments[index : index + 2]
        result = invoke(command, *arguments, option, value)
        assert "Traceback" not in result.output, (command, option, value, result.output)
        assert result.exit_code != ExitCode.INTERNAL, (command, option, value, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            command,
            option,
            value,
            result.exception,
        )


@pytest.mark.parametrize("option", ["--start", "--end"])
@pytest.mark.parametrize("value", ["1999-12-31", "9999-12-31", "20261101", "2026-02-30"])
def test_report_dates_share_the_sane_range_of_extract(
    option: str, value: str, tmp_path: Path
) -> None:
    """`report --start/--end` take the same day type as `extract --date`: a year-9999 end or
    a compact 20261101 is refused up front, naming the option, instead of reaching the query."""
    args = ["report", "--data", str(tmp_path), "--start", "2026-01-01", option, value]
    assert_clean_error(invoke(*args), ExitCode.CONFIG, option)
