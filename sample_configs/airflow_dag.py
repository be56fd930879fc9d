"""Airflow 3 DAGs: snapshot the model registry daily; write the 7-day download report weekly.

Copy this file into the DAGs folder of an Airflow 3 deployment whose workers have the connector
installed from the wheel that `make dist` builds, by file path:

    pip install /path/to/model_versions_connector-0.1.0-py3-none-any.whl

or, with the wheel uploaded to a private package index that also mirrors PyPI (the package is
on no public index), `pip install --index-url INDEX_URL model-versions-connector==0.1.0`; in
the workers' environment or their image. It defines two DAGs, one per schedule (a weekly task
inside the daily DAG would be skipped six runs out of seven), and uses only the connector's
public library API (`import connector`):

1. `model_versions`, daily at 03:15 UTC, task `extract_snapshot`: calls
   `connector.extract(config, date=<the run's logical date>)` and returns `summary.to_dict()`
   (XCom `return_value`; also pushed as XCom `summary` when the task fails). Exit code 0
   succeeds; 3 (partial) succeeds with a warning, since the snapshot was published; 2 (config),
   4 (auth), 5 (incompatible API) and 10 (held: a check held the snapshot, which waits under
   `_held/` for `connector accept` or `discard`; a retry would observe another moment) fail at
   once because retrying cannot help; every other failure (including 6, the output lock held by
   a run outside Airflow) fails the attempt and is retried. A run whose logical date is before
   yesterday (UTC), such as an old run cleared or retried, is skipped with the reason: it would
   file today's counts under that old date and overwrite its history (the connector refuses
   such a date unless `allow_backdate=True`).
   On its `execution_timeout` (2 hours) the run is stopped the connector's way: Airflow 3
   delivers the timeout as SIGALRM to the task's process, and while the extract runs the task
   turns that signal into a stop request (`interrupt=`) instead of letting Airflow raise its
   timeout exception wherever the run happens to be. Requests in flight are cut, nothing is
   published (the day's earlier partition, if any, stays as it was), the staging is cleaned,
   the lock released and the run record says `interrupted`; the task pushes the summary as
   XCom `summary` and fails with `AirflowTaskTimeout`, so Airflow retries it like any timeout.
2. `model_versions_weekly_report`, Mondays at 06:30 UTC (three hours after that day's
   snapshot), task `weekly_report`: `connector.compute_report` over the 7 days up to the run's
   logical date, from the dataset the config names (`output.uri` and its
   `output.storage_options`), written as one HTML page with `connector.write_report`:
   `<report dir>/downloads-7d-<date>.html`. When that day's snapshot is missing (its extract
   failed), the window ends at the latest one before it and the task log says so. A dataset
   with fewer than two snapshots (the first days) skips the task instead of failing it. It
   reads the config without needing its tokens (`load_config(..., placeholders=True)`): a
   report calls no registry.

Settings: an Airflow Variable, else an environment variable of the workers, else the default:

    Variable                     environment                  default
    model_versions_config        MODEL_VERSIONS_CONFIG        /etc/model-versions/connector.yaml
    model_versions_report_dir    MODEL_VERSIONS_REPORT_DIR    /srv/model-versions/reports

The registry token never goes into Airflow's metadata: the config reads it as
`${MODEL_REGISTRY_TOKEN}` from the workers' environment, and the task masks it in the task log.
Give the config an absolute `output.uri`: both DAGs read it, and a relative path would depend
on the worker's working directory.

The connector is imported inside the tasks, so parsing this file (which the DAG processor does
every few minutes) stays fast and needs nothing beyond Airflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Variable, dag, get_current_context, task
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    AirflowTaskTimeout,
)

log = logging.getLogger(__name__)

DAG_ID = "model_versions"
REPORT_DAG_ID = "model_versions_weekly_report"
REPORT_DAYS = 7

# (Variable, environment variable, default)
CONFIG_SETTING = (
    "model_versions_config",
    "MODEL_VERSIONS_CONFIG",
    "/etc/model-versions/connector.yaml",
)
REPORT_DIR_SETTING = (
    "model_versions_report_dir",
    "MODEL_VERSIONS_REPORT_DIR",
    "/srv/model-versions/reports",
)

# Exit codes that another attempt cannot fix: fail without retrying.
PERMANENT_FAILURES = frozenset({"config", "auth", "incompatible_api", "held"})


def setting(variable: str, environment: str, default: str) -> str:
    """An Airflow Variable, else the environment, else the default (read at run time only)."""
    value: str = Variable.get(variable, default=os.environ.get(environment) or default)
    return value


def run_date(context: Any) -> date:
    """The UTC calendar day of the run's logical date (its run_after when triggered without one).

    With `CronTriggerTimetable` the logical date is the moment the run was due, so the 03:15
    run of June 2 snapshots June 2 (a data-interval timetable would say June 1).
    """
    moment: datetime = context.get("logical_date") or context["dag_run"].run_after
    day = moment.astimezone(UTC)
    return date(day.year, day.month, day.day)


def lineage_parent(context: Any) -> str | None:
    """This task's own OpenLineage run (`namespace/job/run_id`) when Airflow's OpenLineage
    provider is installed, so the connector's lineage events nest under the task; None
    otherwise (the connector then reads OPENLINEAGE_PARENT_ID, if set)."""
    try:
        from airflow.providers.openlineage.plugins.macros import lineage_parent_id
    except ImportError:
        return None
    parent: str = lineage_parent_id(context["ti"])
    return parent


def task_result(summary: Any, context: Any) -> dict[str, Any]:
    """The extract task's XCom for a published snapshot (exit 0, or 3 with a warning); every
    other outcome fails the task, with the summary pushed as XCom `summary`."""
    import connector

    result: dict[str, Any] = summary.to_dict()
    if summary.exit_code == connector.ExitCode.INTERRUPTED:  # the timeout stopped it
        context["ti"].xcom_push(key="summary", value=result)
        raise AirflowTaskTimeout(
            f"extract_snapshot reached its execution_timeout: {summary.message}"
        )
    if summary.exit_code == connector.ExitCode.OK:
        log.info("snapshot %s published: %s rows", summary.snapshot_date, summary.rows)
        return result
    if summary.exit_code == connector.ExitCode.PARTIAL:
        log.warning(
            "snapshot %s published, but %d of %d models failed: %s",
            summary.snapshot_date,
            summary.targets_failed,
            summary.targets_attempted,
            [f"{f['org']}/{f['model']}: {f['error_type']}" for f in summary.failures],
        )
        return result
    context["ti"].xcom_push(key="summary", value=result)
    outcome = f"{result['outcome']} (exit {result['exit_code']})"
    message = f"extract {outcome}: {summary.message or 'see the summary XCom'}"
    if result["outcome"] in PERMANENT_FAILURES:
        raise AirflowFailException(message)
    raise AirflowException(message)


@contextlib.contextmanager
def timeout_stops(interrupt: Any) -> Iterator[None]:
    """While the block runs, Airflow's `execution_timeout` asks the connector to stop.

    Airflow 3 times a task out with SIGALRM in the task process's main thread, whose handler
    raises AirflowTaskTimeout at whatever line is running: in the middle of a publish, a lock's
    release or the run record. Here the signal only requests the stop (`Interrupt.request` is
    safe in a signal handler); the run then ends the connector's way and the task raises the
    timeout itself once `extract` has returned.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (and Airflow times out nothing else)
        return
    previous = signal.signal(signal.SIGALRM, lambda signum, _: interrupt.request(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, previous)


DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(minutes=30),  # a registry outage (exit 8) may be over by then
}


@dag(
    dag_id=DAG_ID,
    schedule=CronTriggerTimetable("15 3 * * *", timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=DEFAULT_ARGS,
    tags=["model-versions", "etl"],
    doc_md=__doc__,
)
def model_versions() -> None:
    """Daily registry snapshot."""

    @task(execution_timeout=timedelta(hours=2))
    def extract_snapshot() -> dict[str, Any]:
        """Publish the day's snapshot; fail unless the exit code is ok or partial."""
        from airflow.sdk.log import mask_secret

        import connector

        context = get_current_context()
        interrupt = connector.Interrupt()
        try:
            config = connector.load_config(setting(*CONFIG_SETTING))
            for secret in config.secrets():
                mask_secret(secret)
            with timeout_stops(interrupt):
                summary = connector.extract(
                    config,
                    date=run_date(context),
                    interrupt=interrupt,
                    lineage_parent=lineage_parent(context),
                )
        except connector.SnapshotDateError as exc:  # an old run cleared or retried
            raise AirflowSkipException(f"not extracting: {exc}") from exc
        except connector.ConnectorError as exc:  # config (2), lock held (6), output (7)
            if exc.exit_code.name.lower() in PERMANENT_FAILURES:
                raise AirflowFailException(str(exc)) from exc
            raise
        finally:
            interrupt.close()
        return task_result(summary, context)

    extract_snapshot()


@dag(
    dag_id=REPORT_DAG_ID,
    schedule=CronTriggerTimetable("30 6 * * 1", timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["model-versions", "report"],
    doc_md=__doc__,
)
def model_versions_weekly_report() -> None:
    """Weekly: downloads gained over the last 7 days, as one HTML page."""

    @task(execution_timeout=timedelta(minutes=30))
    def weekly_report() -> str:
        """Downloads gained over the 7 days up to the run's logical date, as one HTML page."""
        from pathlib import Path

        import connector

        end = run_date(get_current_context())
        config = connector.load_config(setting(*CONFIG_SETTING), placeholders=True)
        try:
            result = connector.compute_report(
                config.output.uri,
                start=end - timedelta(days=REPORT_DAYS),
                end=end,
                storage_options=config.output.storage_mapping(),
            )
        except connector.NoDataError as exc:  # fewer than two snapshots so far
            raise AirflowSkipException(str(exc)) from exc
        for note in result.notes:
            log.warning("report: %s", note)
        directory = Path(setting(*REPORT_DIR_SETTING))
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"downloads-{REPORT_DAYS}d-{end.isoformat()}.html"
        connector.write_report(result, path, "html")
        log.info("wrote %s", path)
        return str(path)

    weekly_report()


model_versions_dag = model_versions()
weekly_report_dag = model_versions_weekly_report()

if __name__ == "__main__":  # python airflow_dag.py: one local run of each, no scheduler needed
    model_versions_dag.test()
    weekly_report_dag.test()
