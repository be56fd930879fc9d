"""The fan-out Airflow DAG (sample_configs/airflow_fanout_dag.py): checked statically always,
imported and run with `dag.test()` against the simulator where Airflow is installed, including
a shard task that fails once and is retried."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from airflow_runs import airflow_env, airflow_home, dotted, run_python
from helpers import TOKEN, config_document, write_config

import connector
from connector.errors import ExitCode
from connector.extraction.sharding import shard_of
from connector.simulator.server import FaultPlan, SimulatedRegistry

ROOT = Path(__file__).resolve().parents[1]
DAG_FILE = ROOT / "sample_configs" / "airflow_fanout_dag.py"
DAG_ID = "model_versions_fanout"


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    source = DAG_FILE.read_text(encoding="utf-8")
    return ast.parse(source, str(DAG_FILE))


def calls(tree: ast.Module) -> dict[str, list[ast.Call]]:
    found: dict[str, list[ast.Call]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            found.setdefault(dotted(node.func), []).append(node)
    return found


def test_shards_go_through_the_library_and_are_mapped_with_expand(tree: ast.Module) -> None:
    found = calls(tree)
    [extract] = found["connector.extract"]
    assert [k.arg for k in extract.keywords] == ["date", "shard", "interrupt", "lineage_parent"]
    [publish] = found["connector.publish"]
    assert [k.arg for k in publish.keywords] == ["shards", "lineage_parent"]
    [expand] = found["extract_shard.expand"]
    assert [k.arg for k in expand.keywords] == ["shard"]
    [report] = found["connector.compute_report"]
    assert {k.arg for k in report.keywords} == {"start", "end", "storage_options"}
    [write] = found["connector.write_report"]
    assert isinstance(write.args[2], ast.Constant) and write.args[2].value == "html"


def test_the_dag_file_uses_only_the_public_library_api(tree: ast.Module) -> None:
    """`import connector` and names of `connector.__all__` only (as airflow_dag.py)."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("connector"), node.module
        elif isinstance(node, ast.Attribute) and dotted(node.value) == "connector":
            used.add(node.attr)
    assert used and used <= set(connector.__all__), sorted(used - set(connector.__all__))


def test_the_report_is_weekly_and_the_snapshot_daily(tree: ast.Module) -> None:
    schedules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and dotted(node.func) == "dag":
            settings = {k.arg: k.value for k in node.keywords}
            schedule = settings["schedule"]
            assert isinstance(schedule, ast.Call)
            schedules[dotted(settings["dag_id"])] = ast.literal_eval(schedule.args[0]).split()
    assert schedules["DAG_ID"][2:] == ["*", "*", "*"]
    assert schedules["REPORT_DAG_ID"][2:] == ["*", "*", "1"]


def test_parsing_the_dag_imports_no_connector(tree: ast.Module) -> None:
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "connector" for a in node.names)
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("connector")
            if (node.module or "").startswith("airflow"):
                assert (node.module or "").startswith("airflow.sdk")


def test_permanent_outcomes_are_connector_outcomes(tree: ast.Module) -> None:
    """A renamed exit code must break this test, not turn a page into silent retries."""
    names = {code.name.lower() for code in ExitCode}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.startswith("PERMANENT") for t in node.targets
        ):
            values = ast.literal_eval(node.value.args[0])  # type: ignore[attr-defined]
            assert values <= names, values - names


# --- with Airflow installed ----------------------------------------------------------------

IMPORT_CHECK = """
    import json, sys
    from airflow.models import DagBag
    bag = DagBag(dag_folder={path!r})
    dag = bag.dags.get({dag_id!r})
    weekly = bag.dags.get({dag_id!r} + "_weekly_report")
    print(json.dumps({{
        "errors": {{str(k): str(v) for k, v in bag.import_errors.items()}},
        "connector_imported": "connector" in sys.modules,
        "tasks": {{t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}} if dag else {{}},
        "retries": {{t.task_id: t.retries for t in dag.tasks}} if dag else {{}},
        "weekly": {{
            "tasks": [t.task_id for t in weekly.tasks],
            "expression": weekly.timetable.expression,
            "retries": [t.retries for t in weekly.tasks],
        }} if weekly else None,
    }}))
"""

# The retry delay is 10 minutes in production; the test waits 1 second.
DAG_TEST = """
    import json
    from datetime import datetime, timedelta
    import importlib.util
    spec = importlib.util.spec_from_file_location("airflow_fanout_dag", {path!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = getattr(module, {dag!r})
    for task in dag.tasks:
        task.retry_delay = timedelta(seconds=1)
    run = dag.test(logical_date=datetime.fromisoformat({when!r}))
    tis = run.get_task_instances()
    print(json.dumps({{
        "run": str(run.state),
        "tasks": sorted([t.task_id, t.map_index, str(t.state), t.try_number] for t in tis),
    }}))
"""


@pytest.mark.airflow
def test_the_fanout_dag_imports_cleanly(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    code = IMPORT_CHECK.format(path=str(DAG_FILE), dag_id=DAG_ID)
    answer = run_python(code, airflow_env(tmp_path), timeout=180)
    assert answer["errors"] == {}
    assert answer["connector_imported"] is False
    assert answer["tasks"] == {
        "plan_shards": ["extract_shard", "publish_snapshot"],
        "extract_shard": ["publish_snapshot"],
        "publish_snapshot": [],
    }
    assert all(retries >= 1 for retries in answer["retries"].values())
    assert answer["weekly"] == {
        "tasks": ["weekly_report"],
        "expression": "30 6 * * 1",
        "retries": [2],
    }


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_three_shards_a_retried_shard_one_publish_and_the_weekly_report(
    tmp_path: Path,
    start_simulator: Callable[..., SimulatedRegistry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    registry = start_simulator(orgs=2, models_per_org=3, versions_shape="objects")
    data = tmp_path / "data"
    document = config_document(registry, data)
    document["registry"]["retry"]["max_attempts"] = 2
    config = write_config(tmp_path / "connector.yaml", document)
    day = datetime.now(UTC).date()
    earlier = connector.extract(
        connector.load_config(config), date=day - timedelta(days=7), allow_backdate=True
    )
    assert earlier.exit_code == ExitCode.OK  # the report compares with this one
    # One model answers 503 to its first two requests: the first attempt of its shard task
    # fails it after both of its retries, the shard fails the guard on its own and is retried
    # by Airflow; the retry stages the shard again and replaces the failed attempt's part.
    flaky = ("org-01", "model-0002")
    retried = shard_of(*flaky, 3)
    registry.set_faults(FaultPlan(fail_first={"/".join(flaky): 2}))

    dag_path, env = airflow_home(
        tmp_path,
        DAG_FILE,
        {
            "MODEL_VERSIONS_CONFIG": str(config),
            "MODEL_VERSIONS_REPORT_DIR": str(tmp_path / "reports"),
            "MODEL_VERSIONS_SHARDS": "3",
        },
    )
    code = DAG_TEST.format(
        path=str(dag_path),
        dag="model_versions_fanout_dag",
        when=f"{day.isoformat()}T03:15:00+00:00",
    )
    answer = run_python(code, env, timeout=600)
    assert answer["run"] == "success"
    states = {(task, index): (state, tries) for task, index, state, tries in answer["tasks"]}
    assert states.pop(("extract_shard", retried - 1)) == ("success", 2)
    assert states == {
        ("plan_shards", -1): ("success", 1),
        **{("extract_shard", i): ("success", 1) for i in range(3) if i != retried - 1},
        ("publish_snapshot", -1): ("success", 1),
    }
    partition = data / "model_versions" / f"snapshot_date={day.isoformat()}"
    manifest = json.loads((partition / "_manifest.json").read_text(encoding="utf-8"))
    assert manifest["shards"] == 3
    assert manifest["targets"] == {"attempted": 6, "succeeded": 6, "failed": 0}
    assert manifest["failures"] == []  # the failed attempt's part was replaced, not merged
    assert not (data / "_shards").exists()
    code = DAG_TEST.format(
        path=str(dag_path), dag="weekly_report_dag", when=f"{day.isoformat()}T06:30:00+00:00"
    )
    tokenless = {name: value for name, value in env.items() if name != "MODEL_REGISTRY_TOKEN"}
    weekly = run_python(code, tokenless, timeout=300)
    assert weekly == {"run": "success", "tasks": [["weekly_report", -1, "success", 1]]}
    page = tmp_path / "reports" / f"downloads-7d-{day.isoformat()}.html"
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


# Every shard task's timeout cut to seconds, its retries to none; the callback records how each
# failed and the summary it pushed. The connector is imported first, so the seconds go to the
# run, not to importing pandas.
DAG_TIMEOUT_TEST = """
    import json
    from datetime import datetime, timedelta
    import importlib.util
    import connector.extraction.run
    spec = importlib.util.spec_from_file_location("airflow_fanout_dag", {path!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    failures = []
    def failed(context):
        ti = context["ti"]
        failures.append({{
            "exception": type(context["exception"]).__name__,
            "message": str(context["exception"]),
            "summary": ti.xcom_pull(
                task_ids="extract_shard", key="summary", map_indexes=ti.map_index
            ),
        }})
    dag = module.model_versions_fanout_dag
    task = dag.get_task("extract_shard")
    task.execution_timeout = timedelta(seconds={seconds})
    task.retries = 0
    task.on_failure_callback = [failed]
    run = dag.test(logical_date=datetime.fromisoformat({when!r}))
    tis = run.get_task_instances()
    print(json.dumps({{
        "tasks": sorted([t.task_id, t.map_index, str(t.state)] for t in tis),
        "failures": failures,
    }}))
"""


def _tree_bytes(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_shard_task_timeout_stops_the_shard_and_keeps_the_staged_part(
    tmp_path: Path,
    start_simulator: Callable[..., SimulatedRegistry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Airflow's execution_timeout (SIGALRM) while a shard's requests hang: each shard task
    fails by timeout with its interrupted summary in XCom, the parts an earlier run staged stay
    byte for byte, and the shard locks are free (a publish takes them all)."""
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    fast = start_simulator(orgs=1, models_per_org=6)
    slow = start_simulator(orgs=1, models_per_org=6, latency_seconds=60)  # same catalog
    data = tmp_path / "data"
    day = datetime.now(UTC).date()
    fast_config = connector.load_config(
        write_config(tmp_path / "fast.yaml", config_document(fast, data))
    )
    for index in (1, 2):
        staged = connector.extract(fast_config, date=day, shard=(index, 2))
        assert staged.exit_code == ExitCode.OK and staged.staged
    parts = {
        name: _tree_bytes(data / "_shards" / day.isoformat() / name)
        for name in ("1-of-2", "2-of-2")
    }
    slow_document = config_document(slow, data, registry_settings={"timeout_seconds": 90})
    config = write_config(tmp_path / "connector.yaml", slow_document)

    dag_path, env = airflow_home(
        tmp_path,
        DAG_FILE,
        {
            "MODEL_VERSIONS_CONFIG": str(config),
            "MODEL_VERSIONS_REPORT_DIR": str(tmp_path / "reports"),
            "MODEL_VERSIONS_SHARDS": "2",
        },
    )
    code = DAG_TIMEOUT_TEST.format(
        path=str(dag_path), when=f"{day.isoformat()}T03:15:00+00:00", seconds=10
    )
    answer = run_python(code, env, timeout=300)

    assert answer["tasks"] == [
        ["extract_shard", 0, "failed"],
        ["extract_shard", 1, "failed"],
        ["plan_shards", -1, "success"],
        ["publish_snapshot", -1, "upstream_failed"],
    ]
    assert len(answer["failures"]) == 2
    for failure in answer["failures"]:
        assert failure["exception"] == "AirflowTaskTimeout"
        assert "execution_timeout" in failure["message"]
        summary = failure["summary"]  # pushed by the task before it failed
        assert summary["outcome"] == "interrupted", summary
        assert summary["staged"] is None
        assert summary["requests"].get("abandoned", 0) >= 1  # the timeout came mid-request
    for name, before in parts.items():  # the earlier parts, untouched, no work dir left
        assert _tree_bytes(data / "_shards" / day.isoformat() / name) == before
    assert not (data / "model_versions").exists()
    published = connector.publish(fast_config, day, shards=2)
    assert published.exit_code == ExitCode.OK  # every shard lock was released
