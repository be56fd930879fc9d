"""`output.format: delta`: the dataset as one Delta Lake table, written and read with delta-rs.

    <output>/model_versions/_delta_log/                 the table's transaction log
    <output>/model_versions/snapshot_date=YYYY-MM-DD/   the day's data files (delta-rs names them)
    <output>/_manifests/YYYY-MM-DD.json                 the manifest of the run that published it

The table root is the Hive dataset's own directory, so every path outside it (`_staging/`,
`_shards/`, `_runs/`, `_rejected/`, `_held/`, the lock) is the same for both formats and stays
the Store's, and a reader pointed at `model_versions` finds the table where it found the data.

A day is staged exactly as for Parquet (`partition.open_day_writer`, checked); publishing it is
one delta-rs commit: a predicate overwrite on `snapshot_date = <day>` streamed from the staged
file, which removes every file of that day and adds the new ones atomically. Other days are
never touched, a re-run of a day replaces it, and a run killed before the commit leaves the
table at its previous version (the data files it wrote are referenced by no version; `maintain
--vacuum-days` removes them). The commit carries the manifest (`custom_metadata`) and a `txn`
action naming the run, so whether a run's commit landed is answered from the table's state,
even after the log has been checkpointed. Concurrent commits are resolved by delta-rs's
conflict detection: two days both land, two commits of one day: one wins, the other fails
with nothing of it visible. On S3 the commit is a conditional write (`If-None-Match: *`).

Readers never list the table's directories as Hive partitions (removed files stay until a
vacuum): the days and files of the current version come from the log. Each day's manifest is
also kept in `_manifests/`, outside the table (a full vacuum deletes every file under the table
root that the log does not name, `_manifest.json` of a partition directory included), so it
stays readable after the log entries of its commit have expired.

Only `history()` and `is_deltatable()` of delta-rs are avoided: they hold the GIL while waiting
for the store, which would stall an S3 server running in the same process (the tests' moto).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from connector._version import __version__
from connector.dataset.layout import (
    DATASET_DIR,
    DELTA_LOG_NAME,
    MANIFESTS_DIR,
    PARTITION_PREFIX,
    DataFile,
)
from connector.dataset.localstore import LocalStore
from connector.dataset.objectstore import ENDPOINT_ENV, ObjectStore
from connector.dataset.schema import DATASET_SCHEMA, PARTITION_COLUMN
from connector.dataset.state import parse_json
from connector.dataset.store import STORAGE_ERRORS, Entry, Store
from connector.errors import OutputError

LOG_DIR = f"{DATASET_DIR}/{DELTA_LOG_NAME}"
MANIFEST_KEY = "connector.manifest"  # the commit's custom metadata holding the manifest
APP_PREFIX = "model-versions-connector:"  # txn appId of a run's commit: prefix + run id
# Table features whose data a plain Parquet read would get wrong (rows hidden by deletion
# vectors, physical column names): the connector's own readers refuse such a table.
_UNREADABLE_FEATURES = frozenset({"deletionVectors", "columnMapping"})
DELTA_ERRORS: tuple[type[BaseException], ...] = (DeltaError, *STORAGE_ERRORS)


def is_table(store: Store) -> bool:
    """Whether the dataset is a Delta table (its log directory exists)."""
    return table_in(store, store.list(DATASET_DIR))


def table_in(store: Store, entries: Sequence[Entry]) -> bool:
    """Whether `entries` (the listing of `model_versions/`) hold a Delta table's log. One
    listing answers both what `dataset_format` asks (a log? partitions?): on object storage one
    LIST, where a HEAD of the log plus pyarrow's directory probe took two."""
    entry = next((entry for entry in entries if entry.name == DELTA_LOG_NAME), None)
    if entry is None:
        return False
    if entry.kind != "dir":
        raise OutputError(
            f"{store.display(LOG_DIR)} is a {entry.kind}, not the log directory of a Delta "
            "table; remove it, or point output.uri elsewhere"
        )
    return True


def storage_options(
    options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`output.storage_options` in delta-rs's (object_store's) words; credentials, as for
    pyarrow, come from the standard AWS chain only (environment, profile, instance role)."""
    environ = os.environ if env is None else env
    endpoint = options.get("endpoint_url") or next(
        (environ[name] for name in ENDPOINT_ENV if environ.get(name)), None
    )
    result: dict[str, str] = {}
    if endpoint:
        result["AWS_ENDPOINT_URL"] = endpoint
        if urlsplit(endpoint).scheme == "http":
            result["AWS_ALLOW_HTTP"] = "true"
    if options.get("region"):
        result["AWS_REGION"] = str(options["region"])
    if options.get("addressing_style"):
        virtual = options["addressing_style"] == "virtual"
        result["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "true" if virtual else "false"
    for ours, theirs in (
        ("connect_timeout_seconds", "connect_timeout"),
        ("request_timeout_seconds", "timeout"),
    ):
        if options.get(ours) is not None:
            result[theirs] = f"{float(options[ours]):g}s"
    return result


def location(store: Store) -> tuple[str, dict[str, str]]:
    """The table's URI and delta-rs storage options for a store."""
    if isinstance(store, ObjectStore):
        return store.display(DATASET_DIR), storage_options(store.options)
    if isinstance(store, LocalStore):
        return os.path.abspath(store.native(DATASET_DIR)), {}
    raise OutputError(f"output.format delta needs a local or s3:// output, not {store!r}")


def open_table(store: Store, version: int | None = None) -> DeltaTable:
    """The table at its current (or a given) version; OutputError naming it when unreadable."""
    uri, options = location(store)
    try:
        return DeltaTable(uri, version=version, storage_options=options or None)
    except DELTA_ERRORS as exc:
        raise OutputError(
            f"cannot open the Delta table {store.display(DATASET_DIR)}: {exc}"
        ) from exc


def app_id(run_id: str) -> str:
    """The `txn` appId a run's commit carries."""
    return f"{APP_PREFIX}{run_id}"


def committed(store: Store, run_id: str) -> bool:
    """Whether the commit of run `run_id` is in the table (from its state, not the log)."""
    if not is_table(store):
        return False
    try:
        return open_table(store).transaction_version(app_id(run_id)) is not None
    except DELTA_ERRORS as exc:
        raise OutputError(
            f"cannot read the Delta table {store.display(DATASET_DIR)}: {exc}"
        ) from exc


def _predicate(day: date) -> str:
    return f"{PARTITION_COLUMN.name} = '{day.isoformat()}'"


def _staged_rows(store: Store, source: str, day: date, batch_rows: int) -> pa.RecordBatchReader:
    """The staged file's rows with the partition column in front, streamed a batch at a time
    (memory follows `batch_rows`, not the day)."""
    schema = pa.schema(list(DATASET_SCHEMA), metadata=DATASET_SCHEMA.metadata)

    def batches() -> Iterator[pa.RecordBatch]:
        with store.filesystem.open_input_file(store.native(source)) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows):
                days = pa.array([day] * batch.num_rows, PARTITION_COLUMN.type)
                yield pa.RecordBatch.from_arrays([days, *batch.columns], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def replace_day(
    store: Store, day: date, source: str, manifest: dict[str, Any], *, batch_rows: int = 16_384
) -> tuple[list[str], int]:
    """Replace the day's rows with the staged file's in one commit (a predicate overwrite);
    returns the day's data file names and the committed table version. OutputError, with the
    table at its previous version, when the commit does not land."""
    uri, options = location(store)
    existing = open_table(store) if is_table(store) else None
    run_id = manifest["run_id"]
    metadata = {  # userMetadata: what Spark's DESCRIBE HISTORY shows of a commit
        MANIFEST_KEY: manifest,
        "userMetadata": f"model-versions-connector {__version__}: {day} by run {run_id}",
    }
    commit = CommitProperties(
        custom_metadata=metadata, app_transactions=[Transaction(app_id(run_id), 1)]
    )
    shown = f"the Delta table {store.display(DATASET_DIR)}"
    try:
        write_deltalake(
            existing if existing is not None else uri,
            _staged_rows(store, source, day, batch_rows),
            mode="overwrite",
            predicate=_predicate(day),
            partition_by=[PARTITION_COLUMN.name],
            schema_mode="merge",  # columns a newer schema appends are added to the table
            storage_options=None if existing is not None else options or None,
            name=None if existing is not None else DATASET_DIR,
            description=None if existing is not None else "model registry version snapshots",
            writer_properties=WriterProperties(compression="ZSTD"),
            commit_properties=commit,
        )
    except CommitFailedError as exc:
        raise OutputError(
            f"{shown}: another writer committed to {day} at the same time, and its commit won; "
            f"nothing of this run was published (run again to replace it): {exc}"
        ) from exc
    except DELTA_ERRORS as exc:
        raise OutputError(f"cannot publish {day} to {shown}: {exc}") from exc
    table = existing if existing is not None else open_table(store)
    files = [file.path.rsplit("/", 1)[-1] for file in _files(store, table, [day])]
    return files, table.version()


def _check_readable(store: Store, table: DeltaTable) -> None:
    features = set(table.protocol().reader_features or []) & _UNREADABLE_FEATURES
    if features:
        raise OutputError(
            f"the Delta table {store.display(DATASET_DIR)} uses {', '.join(sorted(features))}, "
            "which the connector's readers do not apply: read it with deltalake or Spark"
        )


def _files(store: Store, table: DeltaTable, days: list[date] | None) -> list[DataFile]:
    _check_readable(store, table)
    actions = pa.table(table.get_add_actions(flatten=True))
    column = f"partition.{PARTITION_COLUMN.name}"
    wanted = None if days is None else set(days)
    found = []
    for path, size, mtime, day in zip(
        actions.column("path").to_pylist(),
        actions.column("size_bytes").to_pylist(),
        actions.column("modification_time").to_pylist(),
        actions.column(column).to_pylist(),
        strict=True,
    ):
        if wanted is not None and day not in wanted:
            continue
        relative = unquote(path)
        if not relative.startswith(f"{PARTITION_PREFIX}{day.isoformat()}/") or ".." in relative:
            raise OutputError(
                f"the Delta table {store.display(DATASET_DIR)} lists {path!r} for {day}: the "
                "connector reads files under snapshot_date=<day>/ only (read it with deltalake)"
            )
        found.append(DataFile(f"{DATASET_DIR}/{relative}", day, int(size), int(mtime) * 1_000_000))
    return sorted(found, key=lambda file: file.path)


def data_files(store: Store, days: list[date] | None = None) -> list[DataFile]:
    """The data files of the current version (of `days`, default all), sorted by path."""
    table = open_table(store)
    try:
        return _files(store, table, days)
    except DELTA_ERRORS as exc:
        raise OutputError(
            f"cannot read the Delta table {store.display(DATASET_DIR)}: {exc}"
        ) from exc


def manifest_path(day: date) -> str:
    """Where the manifest of a day's publish is kept, outside the table."""
    return f"{MANIFESTS_DIR}/{day.isoformat()}.json"


def snapshot_dates(store: Store) -> list[date]:
    """Every day of the current version, plus the days published empty (a commit that removed
    the day's files and added none; their manifest says 0 rows)."""
    days = {file.day for file in data_files(store)}
    for entry in store.list(MANIFESTS_DIR):
        try:
            day = date.fromisoformat(entry.name.removesuffix(".json"))
        except ValueError:
            continue
        if entry.kind == "file" and day not in days and _manifest_rows(store, day) == 0:
            days.add(day)
    return sorted(days)


def _manifest_rows(store: Store, day: date) -> Any:
    raw = store.get(manifest_path(day))
    document = None if raw is None else parse_json(raw, store.display(manifest_path(day)))
    return document.get("rows") if isinstance(document, dict) else None


def maintain(store: Store, *, optimize: bool, vacuum_days: int | None) -> dict[str, Any]:
    """Compact the table's small files and/or remove files no version younger than
    `vacuum_days` needs (also the unreferenced files of killed publishes); the caller holds
    the output lock. Returns what delta-rs did."""
    table = open_table(store)
    done: dict[str, Any] = {"version_before": table.version()}
    try:
        if optimize:
            metrics = table.optimize.compact(writer_properties=WriterProperties(compression="ZSTD"))
            done["optimize"] = {
                "files_added": metrics.get("numFilesAdded", 0),
                "files_removed": metrics.get("numFilesRemoved", 0),
            }
        if vacuum_days is not None:
            removed = table.vacuum(
                retention_hours=vacuum_days * 24,
                dry_run=False,
                enforce_retention_duration=False,  # the operator chose the retention
                full=True,  # also files no commit ever referenced (killed publishes)
            )
            done["vacuum"] = {"files_removed": len(removed), "retention_days": vacuum_days}
    except DELTA_ERRORS as exc:
        raise OutputError(
            f"cannot maintain the Delta table {store.display(DATASET_DIR)}: {exc}"
        ) from exc
    done["version_after"] = open_table(store).version()
    return done
