"""The scheduling samples work: sample_configs/crontab, run-connector.sh and the Airflow DAG.

The crontab's lines are parsed as cron does and their `connector` invocations by the real CLI;
the wrapper runs under /bin/sh against a fake `connector`; the DAG is checked statically always,
and imported and run with `dag.test()` by the tests marked `airflow`, which `make test-airflow`
runs in Airflow's own virtualenv (CI does, on every run).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_runs import airflow_env, airflow_home, dotted, run_python
from click.testing import CliRunner
from helpers import TOKEN, config_document, parse_with_cli, write_config

import connector
from connector.cli import main
from connector.errors import ExitCode
from connector.simulator.server import SimulatedRegistry

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_configs"
CRONTAB = SAMPLES / "crontab"
WRAPPER = SAMPLES / "run-connector.sh"
DAG_FILE = SAMPLES / "airflow_dag.py"
SCHEDULING_DOCS = ROOT / "docs" / "scheduling.md"


# --- cron syntax ---------------------------------------------------------------------------

FIELDS = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
]
NAMES = {
    "month": ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    "day of week": ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}
MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
ENV_LINE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
SHELL_OPERATORS = {"&&", "||", ";", "|"}


def _value(text: str, field: str, low: int, high: int) -> int:
    names = NAMES.get(field, [])
    if text.lower() in names:
        return names.index(text.lower()) + (1 if field == "month" else 0)
    assert text.isdigit(), f"{field}: {text!r} is not a number"
    assert low <= int(text) <= high, f"{field}: {text} is outside {low}-{high}"
    return int(text)


def check_cron_field(text: str, field: str, low: int, high: int) -> None:
    """One of cron's five time fields: lists of *, N, N-M, each optionally /STEP."""
    for item in text.split(","):
        base, _, step = item.partition("/")
        if step:
            assert step.isdigit() and int(step) > 0, f"{field}: bad step in {item!r}"
        if base == "*":
            continue
        first, _, last = base.partition("-")
        start = _value(first, field, low, high)
        if last:
            assert start <= _value(last, field, low, high), f"{field}: empty range {base!r}"
        else:
            assert not step, f"{field}: a step needs * or a range, got {item!r}"


def cron_jobs(text: str) -> tuple[dict[str, str], list[tuple[list[str], str]]]:
    """The environment settings and the (time fields, command) of every job line."""
    environment: dict[str, str] = {}
    jobs: list[tuple[list[str], str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if ENV_LINE.match(line):
            name, _, value = line.partition("=")
            environment[name.strip()] = value.strip()
            continue
        if line.split()[0] in MACROS:
            macro, command = line.split(None, 1)
            jobs.append(([macro], command))
            continue
        parts = line.split(None, 5)
        assert len(parts) == 6, f"not 5 time fields and a command: {line!r}"
        for value, (field, low, high) in zip(parts[:5], FIELDS, strict=True):
            check_cron_field(value, field, low, high)
        jobs.append((parts[:5], parts[5]))
    return environment, jobs


def segments(command: str) -> list[list[str]]:
    """The simple commands of a shell line, split at && || ; |, redirections removed."""
    result: list[list[str]] = [[]]
    words = iter(shlex.split(command))
    for word in words:
        if word in SHELL_OPERATORS:
            result.append([])
        elif word in (">", ">>", "<", "2>", "2>>"):
            next(words)  # the redirection's target
        elif re.fullmatch(r"\d*>&\d+|\d*>>?\S+", word):
            continue
        else:
            result[-1].append(word)
    return [s for s in result if s]


def connector_invocations(command: str) -> list[list[str]]:
    """Every `connector SUBCOMMAND ARGS...` (any path to it) in a shell line."""
    found = []
    for words in segments(command):
        for index, word in enumerate(words):
            if Path(word).name == "connector" and index + 1 < len(words):
                found.append(words[index + 1 :])
                break
    return found


# --- the crontab ---------------------------------------------------------------------------


def test_crontab_lines_are_valid_cron_lines() -> None:
    environment, jobs = cron_jobs(CRONTAB.read_text(encoding="utf-8"))
    assert environment.get("SHELL") == "/bin/sh"  # the wrapper is POSIX sh; cron's default too
    assert len(jobs) == 2
    for _fields, command in jobs:
        # cron turns an unescaped % into a newline: none may be in a command
        assert "%" not in command, command
        assert re.search(r">> ?\S+\.log 2>&1$", command), f"output not appended to a log: {command}"


def test_crontab_commands_reference_files_that_exist() -> None:
    _, jobs = cron_jobs(CRONTAB.read_text(encoding="utf-8"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "connector" in scripts["scripts"]  # the console script the jobs call
    for _fields, command in jobs:
        words = [w for s in segments(command) for w in s]
        for word in words:
            if "sample_configs/" in word:
                relative = word[word.index("sample_configs/") :]
                assert (ROOT / relative).is_file(), f"{word} is not in the repository"
        wrapper = [w for w in words if Path(w).name == WRAPPER.name]
        assert wrapper, f"the job does not go through {WRAPPER.name}: {command}"
        env_file = words[words.index(wrapper[0]) + 1]
        assert env_file.startswith("/"), env_file


def test_crontab_connector_invocations_parse_with_the_real_cli() -> None:
    _, jobs = cron_jobs(CRONTAB.read_text(encoding="utf-8"))
    calls = [call for _, command in jobs for call in connector_invocations(command)]
    by_name = {call[0]: parse_with_cli(call) for call in calls}
    assert set(by_name) == {"extract", "report"}
    extract = by_name["extract"]
    assert extract["config_path"].startswith("/")
    assert extract["log_format"] == "json"
    assert extract["metrics_file"]
    report = by_name["report"]
    assert (report["days"], report["fmt"]) == (7, "html")
    assert str(report["output"]).endswith(".html")


def test_the_docs_cron_lines_parse_with_the_real_cli() -> None:
    blocks = re.findall(r"```cron\n(.*?)```", SCHEDULING_DOCS.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/scheduling.md has no ```cron block"
    for block in blocks:
        _, jobs = cron_jobs(block)
        for _fields, command in jobs:
            assert "%" not in command
            for call in connector_invocations(command):
                parse_with_cli(call)


# --- the wrapper ---------------------------------------------------------------------------


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def wrapper_env(tmp_path: Path) -> dict[str, Any]:
    """A fake `connector` and `logger` on PATH, an alert hook and a 0600 env file, all in tmp."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    alerts = tmp_path / "alerts"
    syslog = tmp_path / "syslog"
    _script(
        bin_dir / "connector",
        f"""\
        printf '%s|%s\\n' "$*" "${{MODEL_REGISTRY_TOKEN:-unset}}" >> {calls}
        echo "summary on stdout"
        echo "log line on stderr" >&2
        exit "${{FAKE_EXIT:-0}}"
        """,
    )
    _script(bin_dir / "logger", f"printf '%s\\n' \"$*\" >> {syslog}\n")
    alert = _script(tmp_path / "alert", f'printf \'%s|%s\\n\' "$1" "$2" >> {alerts}\n')
    env_file = tmp_path / "env"
    env_file.write_text(f"MODEL_REGISTRY_TOKEN={TOKEN}\n", encoding="utf-8")
    env_file.chmod(0o600)
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(tmp_path),
        "ALERT_COMMAND": str(alert),
    }
    return {
        "env": environment,
        "env_file": env_file,
        "calls": calls,
        "alerts": alerts,
        "syslog": syslog,
    }


def run_wrapper(
    setup: dict[str, Any], *args: str, exit_code: int = 0, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {**setup["env"], "FAKE_EXIT": str(exit_code), **env}
    if not args:
        args = (str(setup["env_file"]), "connector", "extract", "--config", "c.yaml")
    return subprocess.run(
        [str(WRAPPER), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_wrapper_is_an_executable_posix_sh_script() -> None:
    assert WRAPPER.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    assert WRAPPER.stat().st_mode & stat.S_IXUSR
    assert "set -u" in WRAPPER.read_text(encoding="utf-8").splitlines()
    subprocess.run(["/bin/sh", "-n", str(WRAPPER)], check=True, timeout=30)


@pytest.mark.parametrize(
    ("code", "level", "words"),
    [
        (0, None, None),
        (3, "warn", "exited 3 (partial)"),
        (6, "warn", "exited 6 (lock_held): the previous run is still going"),
        (2, "page", "exited 2 (config)"),
        (4, "page", "exited 4 (auth)"),
        (8, "page", "exited 8 (not_published)"),
        (124, "page", "exited 124 (timed_out)"),
        (143, "page", "exited 143 (terminated)"),
        (10, "page", "exited 10 (held): a check held the snapshot"),
        (11, "page", "exited 11 (stale)"),
    ],
)
def test_wrapper_alerts_by_exit_code(
    wrapper_env: dict[str, Any], code: int, level: str | None, words: str | None
) -> None:
    result = run_wrapper(wrapper_env, exit_code=code)
    assert result.returncode == code
    # the command ran once, with its arguments and the token exported from the env file
    assert lines(wrapper_env["calls"]) == [f"extract --config c.yaml|{TOKEN}"]
    assert "summary on stdout" in result.stdout
    assert "log line on stderr" in result.stderr
    alerts = lines(wrapper_env["alerts"])
    if level is None:
        assert alerts == []
        assert "run-connector" not in result.stderr
    else:
        assert len(alerts) == 1
        got_level, message = alerts[0].split("|", 1)
        assert got_level == level
        assert words in message
        assert "connector extract --config c.yaml" in message
        assert f"run-connector: {level}: " in result.stderr  # the log says it too
    assert TOKEN not in result.stdout + result.stderr + "".join(alerts)


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_wrapper_pages_a_run_timeout_stopped_with_124_as_its_header_says(
    wrapper_env: dict[str, Any],
) -> None:
    """The crontab's `timeout` in front of the command, for real: timeout exits 124 (the
    connector's own 143 never reaches the wrapper), which pages as timed_out."""
    result = run_wrapper(wrapper_env, str(wrapper_env["env_file"]), "timeout", "0.2", "sleep", "30")
    assert result.returncode == 124
    assert lines(wrapper_env["alerts"]) == [
        "page|timeout 0.2 sleep 30 exited 124 (timed_out): see the log"
    ]
    header = " ".join(
        line.lstrip("#").strip()
        for line in WRAPPER.read_text("utf-8").splitlines()
        if line.startswith("#")
    )
    assert "but timeout itself exits 124" in header and "124 timed_out" in header
    assert "143 terminated (SIGTERM, e.g. `timeout`" not in header


def test_wrapper_names_every_exit_code_like_the_connector() -> None:
    names = dict(re.findall(r"^\s*(\d+)\) echo (\w+) ;;$", WRAPPER.read_text("utf-8"), re.M))
    for code in ExitCode:
        assert names.get(str(int(code))) == code.name.lower()


@pytest.fixture
def syslog_socket(tmp_path: Path) -> Iterator[Path]:
    """A listening Unix datagram socket standing in for /dev/log."""
    path = tmp_path / "log.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    yield path
    server.close()


def test_wrapper_default_alert_goes_to_syslog(
    wrapper_env: dict[str, Any], syslog_socket: Path
) -> None:
    environment = {**wrapper_env["env"], "SYSLOG_SOCKET": str(syslog_socket)}
    del environment["ALERT_COMMAND"]
    result = run_wrapper({**wrapper_env, "env": environment}, exit_code=7)
    assert result.returncode == 7
    assert lines(wrapper_env["syslog"]) == [
        "-t model-versions -p user.crit page: connector extract --config c.yaml exited 7 "
        "(output): see the log"
    ]
    result = run_wrapper({**wrapper_env, "env": environment}, exit_code=3)
    assert lines(wrapper_env["syslog"])[-1].startswith("-t model-versions -p user.warning warn: ")


def test_wrapper_says_so_when_syslog_cannot_take_the_alert(wrapper_env: dict[str, Any]) -> None:
    """logger(1) exits 0 with no syslog socket: the alert must not vanish silently."""
    environment = dict(wrapper_env["env"])
    del environment["ALERT_COMMAND"]
    missing = wrapper_env["env_file"].parent / "no-such-socket"
    setup = {**wrapper_env, "env": {**environment, "SYSLOG_SOCKET": str(missing)}}
    result = run_wrapper(setup, exit_code=8)
    assert result.returncode == 8
    assert lines(wrapper_env["syslog"]) == []  # logger was not trusted with it
    assert "run-connector: page: connector extract --config c.yaml exited 8" in result.stderr
    assert f"no syslog socket at {missing}: this alert went to stderr only" in result.stderr


def test_crontab_says_the_report_needs_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crontab's claim, checked: `report --config` reads only output.uri."""
    comments = " ".join(
        line.lstrip("#").strip()
        for line in CRONTAB.read_text("utf-8").splitlines()
        if line[:1] == "#"
    )
    assert "it uses nothing but output.uri, so it needs no token" in comments
    assert "resolves ${MODEL_REGISTRY_TOKEN}" not in comments
    document = {
        "registry": {"base_url": "http://127.0.0.1:1", "token": "${MODEL_REGISTRY_TOKEN}"},
        "orgs": [{"name": "acme", "models": ["m"]}],
        "output": {"uri": str(tmp_path / "data")},
    }
    config = write_config(tmp_path / "c.yaml", document)
    monkeypatch.delenv("MODEL_REGISTRY_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["report", "--config", str(config)])
    assert "MODEL_REGISTRY_TOKEN" not in result.output
    assert "snapshot" in result.output.lower()  # it got as far as the (empty) dataset


def test_wrapper_alert_command_may_come_from_the_env_file(wrapper_env: dict[str, Any]) -> None:
    hook = _script(
        wrapper_env["env_file"].parent / "hook",
        f'echo "$@" >> {wrapper_env["alerts"]}.from-env\n',
    )
    with wrapper_env["env_file"].open("a", encoding="utf-8") as handle:
        handle.write(f"export ALERT_COMMAND={hook}\n")
    result = run_wrapper(wrapper_env, exit_code=5)
    assert result.returncode == 5
    assert lines(Path(f"{wrapper_env['alerts']}.from-env")) == [
        "page connector extract --config c.yaml exited 5 (incompatible_api): see the log"
    ]


def test_wrapper_pages_when_the_env_file_is_missing(wrapper_env: dict[str, Any]) -> None:
    missing = wrapper_env["env_file"].parent / "no-such-env"
    result = run_wrapper(wrapper_env, str(missing), "connector", "extract")
    assert result.returncode == 2
    assert lines(wrapper_env["calls"]) == []  # nothing ran
    assert lines(wrapper_env["alerts"]) == [
        f"page|cannot read the environment file {missing}; nothing was run"
    ]


def test_wrapper_warns_about_a_readable_env_file(wrapper_env: dict[str, Any]) -> None:
    wrapper_env["env_file"].chmod(0o644)
    result = run_wrapper(wrapper_env, exit_code=0)
    assert result.returncode == 0
    assert lines(wrapper_env["calls"]) == [f"extract --config c.yaml|{TOKEN}"]
    [alert] = lines(wrapper_env["alerts"])
    assert alert.startswith("warn|") and "chmod 600" in alert


def test_wrapper_pages_when_the_command_is_missing(wrapper_env: dict[str, Any]) -> None:
    env_file = str(wrapper_env["env_file"])
    result = run_wrapper(wrapper_env, env_file, "no-such-connector", "extract")
    assert result.returncode == 127
    [alert] = lines(wrapper_env["alerts"])
    assert alert.startswith("page|no-such-connector extract exited 127 (command_not_found)")


def test_wrapper_without_a_command_is_a_usage_error(wrapper_env: dict[str, Any]) -> None:
    result = run_wrapper(wrapper_env, str(wrapper_env["env_file"]))
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert lines(wrapper_env["calls"]) == []


# --- the Airflow DAG: static checks, always run --------------------------------------------


@pytest.fixture(scope="module")
def dag_tree() -> ast.Module:
    source = DAG_FILE.read_text(encoding="utf-8")
    compile(source, str(DAG_FILE), "exec")
    return ast.parse(source, str(DAG_FILE))


def test_dag_file_calls_the_library_extract_and_report(dag_tree: ast.Module) -> None:
    calls = {dotted(node.func): node for node in ast.walk(dag_tree) if isinstance(node, ast.Call)}
    assert "connector.load_config" in calls
    extract = calls["connector.extract"]
    # the logical date, not today; the task's OpenLineage run as the lineage parent
    assert [k.arg for k in extract.keywords] == ["date", "interrupt", "lineage_parent"]
    report = calls["connector.compute_report"]
    assert {k.arg for k in report.keywords} == {"start", "end", "storage_options"}
    write = calls["connector.write_report"]
    assert isinstance(write.args[2], ast.Constant) and write.args[2].value == "html"


def test_dag_file_uses_only_the_public_library_api(dag_tree: ast.Module) -> None:
    """`import connector` and names of `connector.__all__`, nothing else: a module moved or
    renamed inside the package must not break a user's DAG."""
    used = set()
    for node in ast.walk(dag_tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("connector"), node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "connector":
                    assert alias.name == "connector" and alias.asname is None, alias.name
        elif isinstance(node, ast.Attribute) and dotted(node.value) == "connector":
            used.add(node.attr)
    assert used and used <= set(connector.__all__), sorted(used - set(connector.__all__))
    assert {"compute_report", "write_report", "NoDataError", "extract"} <= used


def test_dag_file_imports_only_what_the_connector_has(dag_tree: ast.Module) -> None:
    """A renamed module or function in `connector` must break this test, not the nightly run."""
    imported = 0
    for node in ast.walk(dag_tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("connector"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                imported += 1
        elif isinstance(node, ast.Attribute) and dotted(node.value) == "connector":
            assert hasattr(connector, node.attr), f"connector has no {node.attr}"
            imported += 1
    assert imported >= 5


def test_dag_file_imports_the_connector_only_inside_tasks(dag_tree: ast.Module) -> None:
    """Parsing the DAG (every few minutes, by the DAG processor) must not import the connector."""
    for node in dag_tree.body:
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "connector" for a in node.names)
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("connector")
            if (node.module or "").startswith("airflow"):
                assert node.module.startswith("airflow.sdk"), "Airflow 3: use the airflow.sdk API"


def _dag_settings(dag_tree: ast.Module) -> dict[str, dict[str, ast.expr]]:
    """The keyword arguments of every `@dag(...)`, by dag_id's constant name."""
    found = {}
    for node in ast.walk(dag_tree):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and dotted(decorator.func) == "dag":
                    settings = {k.arg: k.value for k in decorator.keywords if k.arg}
                    found[dotted(settings["dag_id"])] = settings
    return found


def _cron_fields(settings: dict[str, ast.expr]) -> list[str]:
    schedule = settings["schedule"]
    assert isinstance(schedule, ast.Call) and dotted(schedule.func) == "CronTriggerTimetable"
    fields: list[str] = ast.literal_eval(schedule.args[0]).split()
    assert len(fields) == 5
    return fields


def test_dag_file_schedules_daily_and_weekly_without_catchup(dag_tree: ast.Module) -> None:
    """The extract daily, the report weekly (its own DAG: one schedule per DAG)."""
    dags = _dag_settings(dag_tree)
    assert set(dags) == {"DAG_ID", "REPORT_DAG_ID"}
    for settings in dags.values():
        assert ast.literal_eval(settings["catchup"]) is False
        assert ast.literal_eval(settings["max_active_runs"]) == 1
        assert dotted(settings["default_args"]) == "DEFAULT_ARGS"
    assert _cron_fields(dags["DAG_ID"])[2:] == ["*", "*", "*"]  # once a day
    daily_minute, daily_hour = map(int, _cron_fields(dags["DAG_ID"])[:2])
    weekly = _cron_fields(dags["REPORT_DAG_ID"])
    assert weekly[2:4] == ["*", "*"] and weekly[4] in ("1", "mon")  # once a week, on Mondays
    assert (int(weekly[1]), int(weekly[0])) > (daily_hour, daily_minute)  # after that snapshot
    [default_args] = [
        node.value
        for node in dag_tree.body
        if isinstance(node, ast.Assign) and dotted(node.targets[0]) == "DEFAULT_ARGS"
    ]
    assert isinstance(default_args, ast.Dict)
    assert "retries" in [ast.literal_eval(key) for key in default_args.keys if key is not None]


# --- the Airflow DAG: with Airflow installed -----------------------------------------------


IMPORT_CHECK = """
    import json, sys, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        from airflow.models import DagBag
        bag = DagBag(dag_folder={path!r})
    def describe(dag):
        return {{
            "timetable": type(dag.timetable).__name__,
            "expression": getattr(dag.timetable, "expression", None),
            "timezone": str(getattr(dag.timetable, "timezone", "")),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "tasks": {{t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}},
            "retries": {{t.task_id: t.retries for t in dag.tasks}},
        }}
    print(json.dumps({{
        "errors": {{str(k): str(v) for k, v in bag.import_errors.items()}},
        "warnings": [str(w.message) for w in caught if w.filename == {path!r}],
        "connector_imported": "connector" in sys.modules,
        "dags": {{dag_id: describe(dag) for dag_id, dag in bag.dags.items()}},
    }}))
"""


@pytest.mark.airflow
def test_dag_imports_cleanly_with_airflow(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    code = IMPORT_CHECK.format(path=str(DAG_FILE))
    answer = run_python(code, airflow_env(tmp_path), timeout=180)
    assert answer["errors"] == {}
    assert answer["warnings"] == []
    assert answer["connector_imported"] is False  # imported inside the tasks only
    dags = answer["dags"]
    assert sorted(dags) == ["model_versions", "model_versions_weekly_report"]
    for dag in dags.values():
        assert dag["timetable"] == "CronTriggerTimetable"
        assert dag["timezone"] == "UTC"
        assert dag["catchup"] is False
        assert dag["max_active_runs"] == 1
        assert all(retries >= 1 for retries in dag["retries"].values())
    assert dags["model_versions"]["expression"] == "15 3 * * *"
    assert dags["model_versions"]["tasks"] == {"extract_snapshot": []}
    assert dags["model_versions_weekly_report"]["expression"] == "30 6 * * 1"
    assert dags["model_versions_weekly_report"]["tasks"] == {"weekly_report": []}


DAG_TEST = """
    import json, sys
    from datetime import datetime, UTC
    import importlib.util
    spec = importlib.util.spec_from_file_location("airflow_dag", {path!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = getattr(module, {dag!r}).test(logical_date=datetime.fromisoformat({when!r}))
    states = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
    print(json.dumps({{"run": str(run.state), "tasks": states}}))
"""


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dag_runs_extract_then_report_with_dag_test(
    tmp_path: Path,
    start_simulator: Callable[..., SimulatedRegistry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The two DAGs, run for real by Airflow against the simulated registry: the daily
    extract, then the weekly report, which needs no registry token."""
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    registry = start_simulator(orgs=1, models_per_org=3)
    data = tmp_path / "data"
    config = write_config(tmp_path / "connector.yaml", config_document(registry, data))
    day = datetime.now(UTC).date()  # an older logical date is skipped (the backdate guard)
    earlier = connector.extract(
        connector.load_config(config), date=day - timedelta(days=7), allow_backdate=True
    )
    assert earlier.exit_code == ExitCode.OK  # the report compares with this one

    dag_path, env = airflow_home(
        tmp_path,
        DAG_FILE,
        {
            "MODEL_VERSIONS_CONFIG": str(config),
            "MODEL_VERSIONS_REPORT_DIR": str(tmp_path / "reports"),
        },
    )
    code = DAG_TEST.format(
        path=str(dag_path), dag="model_versions_dag", when=f"{day.isoformat()}T03:15:00+00:00"
    )
    answer = run_python(code, env, timeout=300)
    assert answer == {"run": "success", "tasks": {"extract_snapshot": "success"}}
    assert (data / "model_versions" / f"snapshot_date={day.isoformat()}").is_dir()
    code = DAG_TEST.format(
        path=str(dag_path), dag="weekly_report_dag", when=f"{day.isoformat()}T06:30:00+00:00"
    )
    tokenless = {name: value for name, value in env.items() if name != "MODEL_REGISTRY_TOKEN"}
    answer = run_python(code, tokenless, timeout=300)
    assert answer == {"run": "success", "tasks": {"weekly_report": "success"}}
    page = tmp_path / "reports" / f"downloads-7d-{day.isoformat()}.html"
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dag_skips_a_run_whose_logical_date_is_too_old(
    tmp_path: Path,
    start_simulator: Callable[..., SimulatedRegistry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Clearing or retrying an old run must not file today's counts under its date."""
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    registry = start_simulator(orgs=1, models_per_org=2)
    data = tmp_path / "data"
    config = write_config(tmp_path / "connector.yaml", config_document(registry, data))
    dag_path, env = airflow_home(
        tmp_path,
        DAG_FILE,
        {
            "MODEL_VERSIONS_CONFIG": str(config),
            "MODEL_VERSIONS_REPORT_DIR": str(tmp_path / "reports"),
        },
    )
    old = datetime.now(UTC).date() - timedelta(days=30)
    code = DAG_TEST.format(
        path=str(dag_path), dag="model_versions_dag", when=f"{old.isoformat()}T03:15:00+00:00"
    )
    answer = run_python(code, env, timeout=300)
    assert answer["tasks"] == {"extract_snapshot": "skipped"}
    assert not (data / "model_versions").exists()
    assert registry.stats().requests == 0
    code = DAG_TEST.format(
        path=str(dag_path), dag="weekly_report_dag", when=f"{old.isoformat()}T06:30:00+00:00"
    )
    answer = run_python(code, env, timeout=300)  # no snapshot to compare: skipped, not failed
    assert answer["tasks"] == {"weekly_report": "skipped"}


def test_dag_file_skips_a_refused_snapshot_date(dag_tree: ast.Module) -> None:
    """Without Airflow: the task turns the connector's date refusal into a skip, not a failure."""
    handlers = [
        node
        for node in ast.walk(dag_tree)
        if isinstance(node, ast.ExceptHandler)
        and node.type is not None
        and dotted(node.type) == "connector.SnapshotDateError"
    ]
    assert len(handlers) == 1
    [raised] = [n for n in ast.walk(handlers[0]) if isinstance(n, ast.Raise)]
    assert isinstance(raised.exc, ast.Call)
    assert dotted(raised.exc.func) == "AirflowSkipException"


# The extract task's timeout is cut to seconds, its retries to none; the callback records how
# the task failed and the summary it pushed. The connector is imported before the run so the
# few seconds go to the run, not to importing pandas.
DAG_TIMEOUT_TEST = """
    import json
    from datetime import datetime, timedelta
    import importlib.util
    import connector.extraction.run
    spec = importlib.util.spec_from_file_location("airflow_dag", {path!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    failures = []
    def failed(context):
        failures.append({{
            "exception": type(context["exception"]).__name__,
            "message": str(context["exception"]),
            "summary": context["ti"].xcom_pull(task_ids="extract_snapshot", key="summary"),
        }})
    task = module.model_versions_dag.get_task("extract_snapshot")
    task.execution_timeout = timedelta(seconds={seconds})
    task.retries = 0
    task.on_failure_callback = [failed]
    run = module.model_versions_dag.test(logical_date=datetime.fromisoformat({when!r}))
    states = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
    print(json.dumps({{"run": str(run.state), "tasks": states, "failures": failures}}))
"""


def _partition_bytes(partition: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(partition)): path.read_bytes()
        for path in sorted(partition.rglob("*"))
        if path.is_file()
    }


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dag_extract_timeout_stops_the_run_the_connectors_way(
    tmp_path: Path,
    start_simulator: Callable[..., SimulatedRegistry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow's execution_timeout (SIGALRM in the task process) during requests that hang:
    the task fails by timeout, the run ends `interrupted`, the day's partition is untouched,
    the lock is free, and the summary is in XCom."""
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    fast = start_simulator(orgs=1, models_per_org=8)
    slow = start_simulator(orgs=1, models_per_org=8, latency_seconds=60)  # same catalog
    data = tmp_path / "data"
    day = datetime.now(UTC).date()
    fast_config = write_config(tmp_path / "fast.yaml", config_document(fast, data))
    first = connector.extract(connector.load_config(fast_config), date=day)
    assert first.exit_code == ExitCode.OK
    partition = data / "model_versions" / f"snapshot_date={day.isoformat()}"
    before = _partition_bytes(partition)
    slow_document = config_document(slow, data, registry_settings={"timeout_seconds": 90})
    config = write_config(tmp_path / "connector.yaml", slow_document)

    dag_path, env = airflow_home(
        tmp_path,
        DAG_FILE,
        {
            "MODEL_VERSIONS_CONFIG": str(config),
            "MODEL_VERSIONS_REPORT_DIR": str(tmp_path / "reports"),
        },
    )
    code = DAG_TIMEOUT_TEST.format(
        path=str(dag_path), when=f"{day.isoformat()}T03:15:00+00:00", seconds=10
    )
    answer = run_python(code, env, timeout=300)

    assert answer["tasks"] == {"extract_snapshot": "failed"}
    [failure] = answer["failures"]
    assert failure["exception"] == "AirflowTaskTimeout"
    assert "execution_timeout" in failure["message"]
    summary = failure["summary"]  # the task pushed the connector's summary before failing
    assert summary["outcome"] == "interrupted", summary
    assert summary["exit_code"] == int(ExitCode.INTERRUPTED)
    assert summary["published"] is False
    assert summary["requests"].get("abandoned", 0) >= 1  # the timeout came mid-request
    record = json.loads(Path(summary["record"]).read_text(encoding="utf-8"))
    assert (record["run_id"], record["outcome"]) == (summary["run_id"], "interrupted")
    assert record["published"] is False
    assert _partition_bytes(partition) == before  # nothing was published for that date
    assert list((data / "_staging").iterdir()) == []
    second = connector.extract(connector.load_config(fast_config), date=day)
    assert second.exit_code == ExitCode.OK  # the lock was released: the next run takes it


DAG_HELD_TEST = """
    import json
    from datetime import datetime
    import importlib.util
    spec = importlib.util.spec_from_file_location("airflow_dag", {path!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    failures = []
    def failed(context):
        failures.append({{
            "exception": type(context["exception"]).__name__,
            "message": str(context["exception"]),
            "try_number": context["ti"].try_number,
        }})
    task = module.model_versions_dag.get_task("extract_snapshot")
    task.on_failure_callback = [failed]
    run = module.model_versions_dag.test(logical_date=datetime.fromisoformat({when!r}))
    states = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
    print(json.dumps({{"run": str(run.state), "tasks": states, "failures": failures}}))
"""


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_dag_fails_a_held_day_at_once_without_retrying(
    tmp_path: Path,
    start_simulator: Callable[..., SimulatedRegistry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A held day waits for a person: a retry would observe another moment, so none is made."""
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    registry = start_simulator(orgs=2, models_per_org=2)
    data = tmp_path / "data"
    full = write_config(tmp_path / "full.yaml", config_document(registry, data))
    day = datetime.now(UTC).date()
    yesterday = connector.extract(connector.load_config(full), date=day - timedelta(days=1))
    assert yesterday.exit_code == ExitCode.OK
    document = config_document(registry, data)
    document["orgs"] = document["orgs"][:1]  # an org dropped from the config: held
    narrowed = write_config(tmp_path / "connector.yaml", document)
    dag_path, env = airflow_home(
        tmp_path,
        DAG_FILE,
        {
            "MODEL_VERSIONS_CONFIG": str(narrowed),
            "MODEL_VERSIONS_REPORT_DIR": str(tmp_path / "reports"),
        },
    )
    code = DAG_HELD_TEST.format(path=str(dag_path), when=f"{day.isoformat()}T03:15:00+00:00")
    answer = run_python(code, env, timeout=300)
    assert answer["tasks"] == {"extract_snapshot": "failed"}  # the report is its own weekly DAG
    [failure] = answer["failures"]  # one attempt: retries: 2 were not used
    assert failure["exception"] == "AirflowFailException"
    assert failure["message"].startswith("extract held (exit 10): a check held the snapshot of")
    assert len(list((data / "_held" / day.isoformat()).iterdir())) == 1
    assert not (data / "model_versions" / f"snapshot_date={day.isoformat()}").exists()
