"""The README and docs/ tell the truth (links, commands, the generated tables' sources) and
every command has help. The tables themselves are generated from the code by `make docs` and
checked by `make docs-check` (cog), so no test restates them."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest
from click.testing import CliRunner
from helpers import DOCS, REPO, parse_with_cli
from pydantic import BaseModel, Field

from connector.cli import COMMANDS, SHORT_HELP, main
from connector.config import RegistrySettings

README = REPO / "README.md"
DOC_FILES = sorted(DOCS.glob("*.md"))
LINKED_FILES = [README, *DOC_FILES, REPO / "benchmarks" / "RESULTS.md"]


def docgen() -> ModuleType:
    """tools/docgen.py, which `make docs` runs through cog."""
    spec = importlib.util.spec_from_file_location("docgen", REPO / "tools" / "docgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the README and docs/ ------------------------------------------------------------------


def test_the_readme_is_short_and_leads_to_every_doc() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "the README is read in five minutes: move it to docs/"
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", text))
    assert linked == {f"docs/{path.name}" for path in DOC_FILES}


def test_the_two_commands_are_make_targets() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The two commands") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    assert re.findall(r"^make (\w+)", block.group(1), re.M) == ["demo", "test"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = set(re.findall(r"`make ([\w-]+)", text))
    assert named <= targets, f"the README names make targets that do not exist: {named - targets}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("path", LINKED_FILES, ids=lambda p: p.name)
def test_every_link_between_the_docs_resolves(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    for target, anchor in re.findall(r"\]\((?!https?:)([^)#\s]*)(?:#([^)\s]+))?\)", text):
        linked = (path.parent / target).resolve() if target else path
        assert linked.is_file(), f"{path.name} links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{path.name} links to {target}#{anchor}: no heading"


def command_lines(path: Path) -> list[list[str]]:
    """Every `connector ...` line of the file's ```sh blocks, as arguments after `connector`."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words.pop(0)  # VAR=value before the command
            if words[:1] == ["connector"]:
                lines.append(words[1:])
    return lines


def test_every_command_line_in_the_docs_parses_with_the_real_cli() -> None:
    calls = [call for path in LINKED_FILES for call in command_lines(path)]
    assert {call[0] for call in calls} >= {"validate", "targets", "extract", "report", "simulate"}
    for call in calls:
        parse_with_cli(call)


# --- the generated tables: their sources -----------------------------------------------------


def test_the_config_table_shows_each_key_with_its_default_bounds_and_meaning() -> None:
    table = docgen().config_table()
    assert (
        "| `registry.concurrency` | `8` | integer, >= 1, <= 256 | parallel requests (worker "
        "threads) |" in table
    )
    assert "| `registry.max_response_bytes` | `16 MiB` | integer, >= 1 KiB |" in table
    assert "| `registry.version_detail` | `missing` | `missing`, `all` or `off` |" in table
    assert "| `orgs[].name` | required | text, matching `^[A-Za-z0-9]" in table
    keys = re.findall(r"^\| `([\w.\[\]]+)` \|", table, re.M)
    assert len(keys) == len(set(keys))
    assert {"registry.retry.max_elapsed_seconds", "output.storage_options.endpoint_url"} <= set(
        keys
    )
    for name in RegistrySettings.model_fields:  # each key, or each key of its section
        assert any(re.match(rf"registry\.{name}\b", key) for key in keys), name


def test_a_config_key_without_a_description_stops_the_docs() -> None:
    class Settings(BaseModel):
        described: int = Field(1, description="says what it is")
        silent: int = 2

    with pytest.raises(ValueError, match=r"config key section\.silent has no description"):
        list(docgen()._config_fields(Settings, "section."))


def test_the_library_api_lists_every_public_name() -> None:
    import connector

    text = docgen().library_api()
    for name in connector.__all__:
        if name != "__version__":
            assert f"connector.{name}" in text, name


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


def test_the_console_script_freezes_what_is_left_before_the_process_exits() -> None:
    """`python -m connector` (and the console script, `run`) freezes every object alive at its end,
    so the interpreter's last collection does not walk a finished run; `main` (what an
    in-process caller or CliRunner invokes) leaves the collector as it found it."""
    probe = (
        "import atexit, gc, sys\n"
        "import runpy\n"
        "from connector.cli import main\n"
        "atexit.register(lambda: print('FROZEN', gc.get_freeze_count()))\n"
        "sys.argv = ['connector', '--version']\n"
        "try:\n    main()\nexcept SystemExit:\n    print('AFTER_MAIN', gc.get_freeze_count())\n"
        "runpy.run_module('connector', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = dict(
        line.split() for line in result.stdout.splitlines() if line.startswith(("FROZEN", "AFTER"))
    )
    assert lines["AFTER_MAIN"] == "0"
    assert int(lines["FROZEN"]) > 10_000  # the modules and everything the command made


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


def test_shell_completion_works_as_the_docs_say() -> None:
    assert "_CONNECTOR_COMPLETE=bash_source connector" in (DOCS / "cli.md").read_text("utf-8")
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
