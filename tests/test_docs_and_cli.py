"""The README tells the truth (schema, exit codes, commands) and every command has help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from connector.cli import COMMANDS, SHORT_HELP, main
from connector.dataset.schema import markdown_table
from connector.errors import ExitCode

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def section(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", README, re.S)
    assert match, f"README has no {name} markers"
    return match.group(1).strip()


def test_readme_schema_table_is_generated_from_the_schema() -> None:
    assert section("schema") == markdown_table()


def test_readme_lists_every_exit_code() -> None:
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", section("exit-codes"), re.M)
    assert [(int(code), name) for code, name in rows] == [
        (int(code), code.name.lower()) for code in ExitCode
    ]


def test_readme_sections_are_in_order() -> None:
    headings = [
        "## The two commands",
        "## Configuration reference",
        "## The dataset",
        "## Exit codes",
        "## Failure handling",
        "## Scheduling",
        "## Querying the data",
    ]
    positions = [README.index(h) for h in headings]
    assert positions == sorted(positions)


def command_named(name: str) -> click.Command:
    command = main.get_command(click.Context(main), name)
    assert command is not None, name
    return command


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    loaded = command_named(command)
    assert loaded.help
    # The group lists commands from SHORT_HELP without importing them: keep the two equal.
    assert loaded.get_short_help_str(limit=200) == SHORT_HELP[command]
    for option in loaded.params:
        if option.name != "help" and isinstance(option, click.Option):
            assert option.help, f"{command} --{option.name} has no help text"


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["validate", "--help"], ["validate", "--config", "CONFIG"]],
)
def test_help_version_and_validate_never_import_pandas_or_pyarrow(
    args: list[str], tmp_path: Path
) -> None:
    config = tmp_path / "good.yaml"
    config.write_text(
        "registry:\n  base_url: https://registry.example.com\n  token: ${T:-x}\n"
        "orgs:\n  - name: acme\n    models: [a]\noutput:\n  uri: ./data\n"
    )
    args = [str(config) if arg == "CONFIG" else arg for arg in args]
    probe = (
        "import sys\n"
        "from connector.cli import main\n"
        f"sys.argv = ['connector', *{args!r}]\n"
        "try:\n    main()\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "heavy = sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY=", result.stdout


def test_version_option_prints_the_package_version() -> None:
    from connector import __version__

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"connector, version {__version__}"


def test_importing_the_library_is_lazy() -> None:
    probe = (
        "import sys, connector\n"
        "assert 'pandas' not in sys.modules and 'pyarrow' not in sys.modules\n"
        "assert callable(connector.extract) and callable(connector.report)\n"
        "assert 'pandas' in sys.modules\n"
        "assert set(connector.__all__) <= set(dir(connector))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_option_of_extract_is_in_the_readme_or_help() -> None:
    for option in command_named("extract").params:
        for flag in getattr(option, "opts", []):
            if flag.startswith("--") and flag not in ("--help", "--config"):
                assert flag in README, f"{flag} is not documented in the README"


def test_validate_reports_every_problem_with_its_key_path(tmp_path: Path) -> None:
    """Every problem at once, one a line. An unset variable is not one of them by default
    (validate calls nothing, so it checks the token as a placeholder and warns); with
    --require-env it is, as a run would find it."""
    config = tmp_path / "bad.yaml"
    config.write_text(
        "registry:\n  base_url: ftp://example.com\n  token: ${NOPE_NOT_SET_ANYWHERE}\n"
        "  concurency: 3\norgs:\n  - name: acme\n    models: []\n"
        "  - name: ok\n    models: [good, 'bad slug']\noutput:\n  uri: ./data\n"
    )
    expected = [
        "registry.base_url:",
        "registry.concurency: unknown key",
        "orgs[0].models:",
        "orgs[1].models[1]: not a valid slug",
    ]
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2
    assert "Error: 4 configuration problem(s)" in result.stderr
    for line in expected:
        assert line in result.stderr, line
    assert "Warning: NOPE_NOT_SET_ANYWHERE is not set here (registry.token)" in result.stderr
    strict = CliRunner().invoke(main, ["validate", "--config", str(config), "--require-env"])
    assert strict.exit_code == 2
    assert "Error: 5 configuration problem(s)" in strict.stderr
    for line in [*expected, "registry.token: environment variable NOPE_NOT_SET_ANYWHERE is not"]:
        assert line in strict.stderr, line
    assert strict.stderr.startswith("Error: ")


def test_validate_accepts_a_good_file_and_warns_about_literal_tokens(tmp_path: Path) -> None:
    config = tmp_path / "good.yaml"
    config.write_text(
        "registry:\n  base_url: https://registry.example.com\n  token: literal-token-value\n"
        "orgs:\n  - name: acme\n    models: [a, b]\noutput:\n  uri: ./data\n"
    )
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 0
    assert "OK: " in result.stdout and "1 org(s), 2 model(s)" in result.stdout
    assert "registry.token is a literal token" in result.stderr
    assert "literal-token-value" not in result.output


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert "cannot read the file" in result.stderr


def test_bad_date_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["extract", "--config", str(tmp_path / "x.yaml"), "--date", "29/11/2026"]
    )
    assert result.exit_code == 2
    assert "expected YYYY-MM-DD" in result.output


def test_every_option_of_simulate_is_in_the_readme() -> None:
    for option in command_named("simulate").params:
        for flag in getattr(option, "opts", []):
            if flag.startswith("--") and flag != "--help":
                assert flag in README, f"connector simulate {flag} is not documented in the README"
    assert "sim-token" in README and "day N is" in README


def test_shell_completion_works_as_the_readme_says() -> None:
    assert "_CONNECTOR_COMPLETE=bash_source connector" in README
    program = Path(sys.executable).parent / "connector"
    source = subprocess.run(
        [str(program)],
        env={**os.environ, "_CONNECTOR_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "complete -o nosort -F _connector_completion connector" in source.stdout
    words = subprocess.run(
        [str(program)],
        env={
            **os.environ,
            "_CONNECTOR_COMPLETE": "bash_complete",
            "COMP_WORDS": "connector ex",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "plain,extract" in words.stdout.splitlines()
