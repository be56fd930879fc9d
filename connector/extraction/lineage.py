"""OpenLineage run events: START, then COMPLETE, FAIL or ABORT, for each extract, shard run and
publish, so every run appears in a lineage backend (Marquez, DataHub, OpenMetadata...) next to
the orchestrator task that ran it.

Off unless the standard OpenLineage client configuration is present (`OPENLINEAGE_URL`,
`OPENLINEAGE_CONFIG` or an `openlineage.yml` in the working directory or `~/.openlineage/`, or
`OPENLINEAGE__TRANSPORT__*` variables; `OPENLINEAGE_DISABLED=true` wins): without it the client
would print every event on stdout, where `--summary-format json` writes the summary. The
`openlineage-python` client is imported only then, and its transports (HTTP, Kafka, file...)
do the sending.

Naming (docs/scheduling.md): the job is `<config file name without extension>.<step>` (step:
`extract`, `shard_K_of_N`, `publish`) in the namespace `OPENLINEAGE_NAMESPACE` (default
`model-versions-connector`); the run id is the run record's id (a UUID, written with hyphens as
the spec's `format: uuid` requires). The parent run is the orchestrator's, given as
`namespace/job/run_id` (what the Airflow OpenLineage provider's `lineage_parent_id` macro gives)
by the caller or in `OPENLINEAGE_PARENT_ID` (and `OPENLINEAGE_ROOT_PARENT_ID`, as dbt-ol reads
them). Inputs are the registry's orgs (or, for a publish, the staged parts); the output is the
day's partition, the Delta table, or the staged part, with its schema, row count, bytes and
files, and the check step's results as data-quality assertions where the summary has them.

Emitting never fails a run: the first failure of a run is logged (a warning), later ones only
at debug level.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connector._version import __version__
from connector.dataset import partition
from connector.dataset.layout import DATASET_DIR, partition_path
from connector.dataset.reader import data_files
from connector.dataset.schema import COLUMNS, DATASET_SCHEMA, FILE_SCHEMA, PARTITION_COLUMN
from connector.dataset.shards import part_path
from connector.dataset.store import OUTPUT_ERRORS, Store
from connector.errors import ConfigError, ExitCode
from connector.extraction.context import RunContext
from connector.extraction.summary import RunSummary
from connector.loggers import get_logger
from connector.redaction import redact

log = get_logger(__name__)

PARENT_ENV = "OPENLINEAGE_PARENT_ID"
ROOT_ENV = "OPENLINEAGE_ROOT_PARENT_ID"
NAMESPACE_ENV = "OPENLINEAGE_NAMESPACE"
DEFAULT_NAMESPACE = "model-versions-connector"
PRODUCER = f"urn:model-versions-connector:{__version__}"  # who wrote the events (a URI)
_ENDED = {ExitCode.INTERRUPTED, ExitCode.TERMINATED}  # stopped from outside: ABORT
_DOCS = {column.name: column.doc for column in (PARTITION_COLUMN, *COLUMNS)}


@dataclass(frozen=True)
class RunRef:
    """A run of another job: the orchestrator task that started this one."""

    namespace: str
    name: str
    run_id: str

    @classmethod
    def parse(cls, text: str, where: str) -> RunRef:
        """`namespace/job/run_id` (a namespace may itself hold '/', e.g. s3://bucket)."""
        namespace, _, rest = text.strip().rpartition("/")
        namespace, _, name = namespace.rpartition("/")
        try:
            run_id = str(uuid.UUID(rest))
        except ValueError:
            run_id = ""
        if not (namespace and name and run_id):
            raise ConfigError(
                [f"{where}: expected namespace/job/run-uuid (as Airflow's lineage_parent_id)"]
            )
        return cls(namespace, name, run_id)


@dataclass(frozen=True)
class Dataset:
    """A dataset as OpenLineage names it (namespace + name)."""

    namespace: str
    name: str


@dataclass(frozen=True)
class Step:
    """What a run does, for its events: its job and the datasets it reads and writes."""

    job: str  # `<config>.<step>`
    kind: str  # EXTRACT, SHARD or PUBLISH (the jobType facet)
    inputs: tuple[Dataset, ...]
    output: Dataset
    staged: bool = False  # the output is a staged part (a shard run), not the published day


def configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether the OpenLineage client has a configuration to send with (module docstring)."""
    environ = os.environ if env is None else env
    if environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OPENLINEAGE_URL") or any(k.startswith("OPENLINEAGE__") for k in environ):
        return True
    files = [environ.get("OPENLINEAGE_CONFIG"), "openlineage.yml"]
    files.append(os.path.join(os.path.expanduser("~"), ".openlineage", "openlineage.yml"))
    return any(path and os.path.isfile(path) for path in files)


def job_base(source: str | None) -> str:
    """The config file's name without extension names the jobs (`daily.yaml` -> `daily`)."""
    stem = Path(source).stem if source and source != "-" else ""
    return stem or "connector"


def store_dataset(store: Store, path: str) -> Dataset:
    """A path of a store in OpenLineage's naming: `file` + absolute path, `s3://bucket` + key."""
    if store.is_local:
        return Dataset("file", os.path.abspath(store.native(path)))
    bucket, _, key = store.native(path).partition("/")
    return Dataset(f"s3://{bucket}", key)


def registry_inputs(registry: str, orgs: Iterable[str]) -> tuple[Dataset, ...]:
    """One input per org: namespace the registry's origin, name its API root's path to the org
    (`registry` is the resolved root, so every way of writing `base_url` gives one name)."""
    parts = urlsplit(registry)
    base = parts.path.strip("/")
    return tuple(
        Dataset(f"{parts.scheme}://{parts.netloc}", "/".join(p for p in (base, "orgs", org) if p))
        for org in dict.fromkeys(orgs)
    )


def published_output(context: RunContext) -> Dataset:
    """The day's partition, or the whole Delta table (a day is a version of it)."""
    path = DATASET_DIR if context.table_format == "delta" else partition_path(context.day)
    return store_dataset(context.store, path)


Parents = tuple[RunRef | None, RunRef | None]


def parents_from(given: RunRef | None, env: Mapping[str, str] | None = None) -> Parents:
    """The parent run (the caller's, else `OPENLINEAGE_PARENT_ID`) and the root run
    (`OPENLINEAGE_ROOT_PARENT_ID`); a variable that is not `namespace/job/run-uuid` is
    ignored with a warning (lineage never fails a run)."""
    environ = os.environ if env is None else env
    found: list[RunRef | None] = []
    for name, value in ((PARENT_ENV, given), (ROOT_ENV, None)):
        text = environ.get(name) if value is None else None
        try:
            found.append(value or (RunRef.parse(text, name) if text else None))
        except ConfigError as exc:
            log.warning("lineage: %s; sending without it", exc, extra={"event": "lineage_failed"})
            found.append(None)
    return (found[0], found[1] if found[0] is not None else None)


def observed(
    context: RunContext,
    step: Step,
    body: Callable[[], RunSummary],
    *,
    parent: str | None = None,
) -> RunSummary:
    """Run `body` (the run) between its START event and its final one; when lineage is not
    configured, just run it. `parent`: the orchestrator's run as `namespace/job/run-uuid`
    (ConfigError when it is not one, whether lineage is on or not)."""
    given = RunRef.parse(parent, "lineage_parent") if parent else None
    if not configured():
        return body()
    emitter = _Emitter(context, step, parents_from(given))
    emitter.send("START")
    try:
        summary = body()
    except BaseException as exc:
        state = "FAIL" if isinstance(exc, Exception) else "ABORT"
        emitter.send(state, message=f"{type(exc).__name__}: {exc}")
        emitter.close()
        raise
    emitter.send(_final_state(summary, step), summary=summary)
    emitter.close()
    return summary


def extract_step(context: RunContext, source: str | None, orgs: Iterable[str]) -> Step:
    """An extract: the registry's orgs in, the day's partition (or the table) out."""
    return Step(
        f"{job_base(source)}.extract",
        "EXTRACT",
        registry_inputs(context.registry, orgs),
        published_output(context),
    )


def shard_step(
    context: RunContext, source: str | None, orgs: Iterable[str], shard: tuple[int, int]
) -> Step:
    """A part run (`--shard K/N`): the orgs in, the staged part out."""
    index, count = shard
    return Step(
        f"{job_base(source)}.shard_{index}_of_{count}",
        "SHARD",
        registry_inputs(context.registry, orgs),
        store_dataset(context.store, part_path(context.day, index, count)),
        staged=True,
    )


def publish_step(context: RunContext, source: str | None, count: int) -> Step:
    """A publish of N staged parts: the parts in, the day's partition (or the table) out."""
    parts = tuple(
        store_dataset(context.store, part_path(context.day, index, count))
        for index in range(1, count + 1)
    )
    return Step(f"{job_base(source)}.publish", "PUBLISH", parts, published_output(context))


def _final_state(summary: RunSummary, step: Step) -> str:
    if summary.exit_code in _ENDED:
        return "ABORT"
    done = summary.staged if step.staged else summary.published
    return "COMPLETE" if done else "FAIL"


class _Emitter:
    """The events of one run, through one client; failures logged once."""

    def __init__(self, context: RunContext, step: Step, parents: Parents) -> None:
        self.context, self.step, self.parents = context, step, parents
        self.run_id = str(uuid.UUID(context.run_id))
        self.failed = False
        self.client: Any = None
        try:
            from openlineage.client import OpenLineageClient

            self.client = OpenLineageClient()
        except Exception as exc:  # a broken openlineage.yml must not fail the run
            self._failed("start the OpenLineage client", exc)

    def send(
        self, state: str, *, summary: RunSummary | None = None, message: str | None = None
    ) -> None:
        if self.client is None:
            return
        try:
            self.client.emit(self._event(state, summary, message))
        except Exception as exc:  # the client raises what its transport raises
            self._failed(f"emit the {state} event", exc)

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.close(timeout=10.0)
        except Exception as exc:
            self._failed("close the OpenLineage client", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        text = redact(
            f"could not {what} for run {self.context.run_id}: {type(exc).__name__}: {exc}",
            list(self.context.secrets),
        )
        if self.failed:
            log.debug("lineage: %s", text, extra={"event": "lineage_failed"})
            return
        self.failed = True
        log.warning(
            "lineage: %s (the run is not affected)", text, extra={"event": "lineage_failed"}
        )

    def _event(self, state: str, summary: RunSummary | None, message: str | None) -> Any:
        from openlineage.client import event_v2

        step = self.step
        return event_v2.RunEvent(
            eventType=event_v2.RunState[state],
            eventTime=datetime.now(UTC).isoformat(timespec="milliseconds"),
            run=event_v2.Run(runId=self.run_id, facets=self._run_facets(state, summary, message)),
            job=event_v2.Job(namespace=_namespace(), name=step.job, facets=_job_facets(step)),
            inputs=[event_v2.InputDataset(d.namespace, d.name) for d in step.inputs],
            outputs=[self._output(summary)],
            producer=PRODUCER,
        )

    def _run_facets(
        self, state: str, summary: RunSummary | None, message: str | None
    ) -> dict[str, Any]:
        from openlineage.client.constants import __version__ as client_version
        from openlineage.client.facet_v2 import (
            error_message_run,
            nominal_time_run,
            parent_run,
            processing_engine_run,
        )

        day = datetime.combine(self.context.day, time(0), UTC)
        facets: dict[str, Any] = {
            "nominalTime": nominal_time_run.NominalTimeRunFacet(
                nominalStartTime=day.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                producer=PRODUCER,
            ),
            "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
                version=__version__,
                name="model-versions-connector",
                openlineageAdapterVersion=client_version,
                producer=PRODUCER,
            ),
        }
        parent, root = self.parents
        if parent is not None:
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=parent.run_id),
                job=parent_run.Job(namespace=parent.namespace, name=parent.name),
                root=None
                if root is None
                else parent_run.Root(
                    run=parent_run.RootRun(runId=root.run_id),
                    job=parent_run.RootJob(namespace=root.namespace, name=root.name),
                ),
                producer=PRODUCER,
            )
        failure = message or (_failure(summary) if state in ("FAIL", "ABORT") else None)
        if failure:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=redact(failure, list(self.context.secrets)),
                programmingLanguage="python",
                producer=PRODUCER,
            )
        return facets

    def _output(self, summary: RunSummary | None) -> Any:
        from openlineage.client import event_v2
        from openlineage.client.facet_v2 import (
            data_quality_assertions_dataset,
            dataset_version_dataset,
            output_statistics_output_dataset,
            schema_dataset,
        )

        schema = FILE_SCHEMA if self.step.staged else DATASET_SCHEMA
        facets: dict[str, Any] = {
            "schema": schema_dataset.SchemaDatasetFacet(
                fields=[
                    schema_dataset.SchemaDatasetFacetFields(
                        name=field.name, type=str(field.type), description=_DOCS.get(field.name)
                    )
                    for field in schema
                ],
                producer=PRODUCER,
            )
        }
        output_facets: dict[str, Any] = {}
        if summary is not None and (summary.published or summary.staged):
            size, files, version = self._written(summary)
            output_facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=summary.rows, size=size, fileCount=files, producer=PRODUCER
                )
            )
            if version is not None:
                facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                    datasetVersion=str(version), producer=PRODUCER
                )
        assertions = _assertions(summary)
        if assertions:
            facets["dataQualityAssertions"] = (
                data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                    assertions=[
                        data_quality_assertions_dataset.Assertion(**item) for item in assertions
                    ],
                    producer=PRODUCER,
                )
            )
        output = self.step.output
        return event_v2.OutputDataset(
            output.namespace, output.name, facets=facets, outputFacets=output_facets
        )

    def _written(self, summary: RunSummary) -> tuple[int | None, int | None, int | None]:
        """Bytes and files written, and the Delta table's version (from the store: never
        fails; None where it cannot be read)."""
        store, day = self.context.store, self.context.day
        try:
            if self.step.staged:
                sizes = [
                    e.size or 0
                    for e in store.list(_part_dir(summary))
                    if e.name.endswith(".parquet")
                ]
                return sum(sizes), len(sizes), None
            files = data_files(store, [day])
            version = None
            if self.context.table_format == "delta":
                version = (partition.read_manifest(store, day) or {}).get("delta_version")
            return sum(f.size or 0 for f in files), len(files), version
        except OUTPUT_ERRORS as exc:
            log.debug("lineage: cannot measure the output: %s", exc)
            return None, None, None


def _part_dir(summary: RunSummary) -> str:
    index, count = (int(n) for n in (summary.shard or "1/1").split("/"))
    return part_path(date.fromisoformat(summary.snapshot_date), index, count)


def _namespace() -> str:
    return os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE


def _job_facets(step: Step) -> dict[str, Any]:
    from openlineage.client.facet_v2 import job_type_job

    return {
        "jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH",
            integration="MODEL_VERSIONS_CONNECTOR",
            jobType=step.kind,
            producer=PRODUCER,
        )
    }


def _failure(summary: RunSummary | None) -> str | None:
    if summary is None:
        return None
    code = summary.exit_code
    return f"{code.outcome} (exit {int(code)}): {summary.message or 'nothing was published'}"


def _assertions(summary: RunSummary | None) -> list[dict[str, Any]]:
    """The check step's results (`checks` of the summary, where the connector version has the
    check step) as OpenLineage assertions: a list of {name, passed|verdict, value, threshold}
    or a mapping of name to such a document; anything else is ignored."""
    checks = summary.to_dict().get("checks") if summary is not None else None
    items = (
        list(checks.items())
        if isinstance(checks, dict)
        else [(c.get("name"), c) for c in checks or [] if isinstance(c, dict)]
    )
    found = []
    for name, check in items:
        if not isinstance(name, str) or not isinstance(check, dict):
            continue
        verdict = check.get("verdict", check.get("status"))
        passed = check.get("passed")
        success = (
            passed if isinstance(passed, bool) else str(verdict).lower() in ("pass", "passed", "ok")
        )
        found.append(
            {
                "assertion": name,
                "success": success,
                "name": name,
                "actual": None if check.get("value") is None else str(check["value"]),
                "expected": None if check.get("threshold") is None else str(check["threshold"]),
                "severity": "error",
            }
        )
    return found
