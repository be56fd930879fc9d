"""Shared by the two DAG tests (the daily DAG, the fan-out DAG): reading a DAG file's AST, and
running code in a fresh interpreter with an Airflow home of its own."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from helpers import REPO


def dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name or Attribute chain; "" for anything else (a call, a subscript)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return ""


def airflow_env(home: Path) -> dict[str, str]:
    """An environment with its own AIRFLOW_HOME and DAG folder, the connector importable."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }


def run_python(code: str, env: dict[str, str], timeout: int) -> dict[str, Any]:
    """Run code in a fresh interpreter (Airflow configures logging and warnings process-wide)
    and return the JSON object it prints on its last line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def airflow_home(
    tmp_path: Path, dag_file: Path, settings: dict[str, str]
) -> tuple[Path, dict[str, str]]:
    """An Airflow home under tmp_path with a copy of dag_file in its DAG folder and a migrated
    metadata database: the copied DAG's path and the environment (with settings) to run it in."""
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    dag_path = home / "dags" / dag_file.name
    dag_path.write_text(dag_file.read_text(encoding="utf-8"), encoding="utf-8")
    env = {**airflow_env(home), **settings}
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return dag_path, env
