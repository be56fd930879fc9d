"""Airflow 3 DAGs, fan-out variant: N shard tasks in parallel, then one publish; a weekly report.

The same daily snapshot as `airflow_dag.py`, split so that Airflow spreads the fetching over
its workers (any number of machines that share the dataset's output). The workers install the
connector as for `airflow_dag.py`: the wheel `make dist` builds,
`pip install /path/to/model_versions_connector-0.1.0-py3-none-any.whl`, or
`model-versions-connector==0.1.0` from a private package index. Tasks:

1. `plan_shards` returns one `{"index": K, "count": N}` per shard (N from the settings below).
2. `extract_shard` is mapped over that list with `.expand`: task K calls
   `connector.extract(config, date=<logical date>, shard=(K, N))`, which fetches only shard K
   of N (a stable hash of `org/model`) and stages it under `<output>/_shards/<date>/K-of-N/`.
   Nothing is published. A retried shard task stages its part again and replaces the part of
   the failed attempt, never the other shards': retries are idempotent. A shard fails the
   attempt (and is retried) when it could not stage (exit 6, 7, 1), or when so many of its own
   models failed that its part alone would fail the publish guard (a registry blip is likely
   over by the retry). 2 (config) and 5 (incompatible API) fail at once: retrying cannot help.
   On its `execution_timeout` (SIGALRM from Airflow 3) the shard run is stopped the connector's
   way, as in `airflow_dag.py`: requests cut, the part an earlier attempt staged left as it
   was, its lock released, its summary `interrupted` (pushed as XCom `summary`); the task
   fails with `AirflowTaskTimeout`, so Airflow retries it like any timeout.
3. `publish_snapshot` runs once every shard task succeeded: `connector.publish(config, date,
   shards=N)` checks that the N parts make one snapshot (a missing, stale or duplicated shard
   is exit 9), applies the publish guard over all shards together, writes one manifest and
   publishes atomically. Exit 0 succeeds, 3 (partial) succeeds with a warning; 2, 4, 5, 9 and
   10 (a check held the snapshot: it is kept under `_held/` for `connector accept` or
   `discard`; a retry would observe another moment) fail without retrying (a person must
   look), other failures are retried.
4. `weekly_report`, in its own DAG `model_versions_fanout_weekly_report` (Mondays at 06:30
   UTC) as in `airflow_dag.py`: the 7-day HTML report up to the run's logical date, through
   the public library API only, without the registry token.

Settings: an Airflow Variable, else an environment variable of the workers, else the default:

    Variable                     environment                  default
    model_versions_config        MODEL_VERSIONS_CONFIG        /etc/model-versions/connector.yaml
    model_versions_report_dir    MODEL_VERSIONS_REPORT_DIR    /srv/model-versions/reports
    model_versions_shards        MODEL_VERSIONS_SHARDS        4

Change N only between runs: the publish refuses parts staged for another N. The token never
goes into Airflow's metadata (the config reads `${MODEL_REGISTRY_TOKEN}` from the workers'
environment) and is masked in the task logs. Parsing this file imports nothing but Airflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn

from airflow.sdk import CronTriggerTimetable, Variable, dag, get_current_context, task
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    AirflowTaskTimeout,
)

log = logging.getLogger(__name__)

DAG_ID = "model_versions_fanout"
REPORT_DAG_ID = "model_versions_fanout_weekly_report"
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
SHARDS_SETTING = ("model_versions_shards", "MODEL_VERSIONS_SHARDS", "4")

# Outcomes that another attempt cannot fix: fail without retrying.
PERMANENT_SHARD_FAILURES = frozenset({"config", "incompatible_api"})
PERMANENT_PUBLISH_FAILURES = frozenset(
    {"config", "auth", "incompatible_api", "shards_incomplete", "held"}
)


def setting(variable: str, environment: str, default: str) -> str:
    """An Airflow Variable, else the environment, else the default (read at run time only)."""
    value: str = Variable.get(variable, default=os.environ.get(environment) or default)
    return value


def run_date(context: Any) -> date:
    """The UTC calendar day of the run's logical date (its run_after when triggered without
    one); see `airflow_dag.py`."""
    moment: datetime = context.get("logical_date") or context["dag_run"].run_after
    day = moment.astimezone(UTC)
    return date(day.year, day.month, day.day)


def load_config() -> Any:
    """The connector's config, with every token masked in this task's log."""
    from airflow.sdk.log import mask_secret

    import connector

    config = connector.load_config(setting(*CONFIG_SETTING))
    for secret in config.secrets():
        mask_secret(secret)
    return config


@contextlib.contextmanager
def timeout_stops(interrupt: Any) -> Iterator[None]:
    """While the block runs, Airflow's `execution_timeout` (SIGALRM in the task process's main
    thread) asks the connector to stop instead of raising wherever the run is; see
    `airflow_dag.py`."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only (and Airflow times out nothing else)
        return
    previous = signal.signal(signal.SIGALRM, lambda signum, _: interrupt.request(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, previous)


def fail(outcome: str, message: str, permanent: frozenset[str]) -> NoReturn:
    """Fail the attempt: for good when retrying cannot help, else so Airflow retries it."""
    if outcome in permanent:
        raise AirflowFailException(message)
    raise AirflowException(message)


@task
def plan_shards() -> list[dict[str, int]]:
    """One {"index": K, "count": N} per shard of this run."""
    count = int(setting(*SHARDS_SETTING))
    if count < 1:
        raise AirflowFailException(f"model_versions_shards must be at least 1, got {count}")
    return [{"index": index, "count": count} for index in range(1, count + 1)]


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


@task(execution_timeout=timedelta(hours=2), max_active_tis_per_dagrun=16)
def extract_shard(shard: dict[str, int]) -> dict[str, Any]:
    """Stage one shard for the run's date, replacing what an earlier attempt staged."""
    import connector

    index, count = shard["index"], shard["count"]
    context = get_current_context()
    interrupt = connector.Interrupt()
    try:
        config = load_config()
        with timeout_stops(interrupt):
            summary = connector.extract(
                config,
                date=run_date(context),
                shard=(index, count),
                interrupt=interrupt,
                lineage_parent=lineage_parent(context),
            )
    except connector.SnapshotDateError as exc:  # an old run cleared or retried: skip it
        raise AirflowSkipException(str(exc)) from exc
    except connector.ConnectorError as exc:  # config (2), lock held (6), output (7)
        fail(exc.exit_code.name.lower(), str(exc), PERMANENT_SHARD_FAILURES)
    finally:
        interrupt.close()
    result = summary.to_dict()
    if summary.exit_code == connector.ExitCode.INTERRUPTED:  # the timeout stopped it
        context["ti"].xcom_push(key="summary", value=result)
        raise AirflowTaskTimeout(
            f"shard {index}/{count} reached its execution_timeout: {summary.message}"
        )
    if summary.staged is None:
        context["ti"].xcom_push(key="summary", value=result)
        message = f"shard {index}/{count}: {summary.message}"
        fail(result["outcome"], message, PERMANENT_SHARD_FAILURES)
    if summary.success_ratio < config.output.min_success_ratio:
        context["ti"].xcom_push(key="summary", value=result)
        raise AirflowException(
            f"shard {index}/{count}: only {summary.targets_succeeded} of "
            f"{summary.targets_attempted} models succeeded; retrying the shard"
        )
    if summary.failures:
        log.warning(
            "shard %s staged, but %d model(s) failed: %s",
            summary.shard,
            len(summary.failures),
            [f"{f['org']}/{f['model']}: {f['error_type']}" for f in summary.failures],
        )
    return {"snapshot_date": summary.snapshot_date, "shard": summary.shard}


@task(execution_timeout=timedelta(minutes=30))
def publish_snapshot(shards: list[dict[str, int]]) -> dict[str, Any]:
    """Merge the staged shards and publish the day's snapshot."""
    import connector

    context = get_current_context()
    config = load_config()
    try:
        summary = connector.publish(
            config,
            run_date(context),
            shards=len(shards),
            lineage_parent=lineage_parent(context),
        )
    except connector.ConnectorError as exc:  # missing/stale shard (9), lock (6), output (7)
        fail(exc.exit_code.name.lower(), str(exc), PERMANENT_PUBLISH_FAILURES)
    result = summary.to_dict()
    if summary.exit_code == connector.ExitCode.PARTIAL:
        log.warning("published, but %d model(s) failed", summary.targets_failed)
    elif summary.exit_code != connector.ExitCode.OK:
        context["ti"].xcom_push(key="summary", value=result)
        message = f"publish {result['outcome']} (exit {result['exit_code']}): {summary.message}"
        fail(result["outcome"], message, PERMANENT_PUBLISH_FAILURES)
    return result


@task(execution_timeout=timedelta(minutes=30))
def weekly_report() -> str:
    """Downloads gained over the 7 days up to the run's logical date, as one HTML page."""
    from pathlib import Path

    import connector

    end = run_date(get_current_context())
    config = connector.load_config(setting(*CONFIG_SETTING), placeholders=True)  # no token
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


@dag(
    dag_id=DAG_ID,
    schedule=CronTriggerTimetable("15 3 * * *", timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
    },
    tags=["model-versions", "etl"],
    doc_md=__doc__,
)
def model_versions_fanout() -> None:
    """Daily registry snapshot in N shards, one publish."""

    shards = plan_shards()
    staged = extract_shard.expand(shard=shards)
    published = publish_snapshot(shards)
    staged >> published


@dag(
    dag_id=REPORT_DAG_ID,
    schedule=CronTriggerTimetable("30 6 * * 1", timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["model-versions", "report"],
    doc_md=__doc__,
)
def model_versions_fanout_weekly_report() -> None:
    """Weekly: downloads gained over the last 7 days, as one HTML page."""

    weekly_report()


model_versions_fanout_dag = model_versions_fanout()
weekly_report_dag = model_versions_fanout_weekly_report()

if __name__ == "__main__":  # python airflow_fanout_dag.py: one local run of each
    model_versions_fanout_dag.test()
    weekly_report_dag.test()
