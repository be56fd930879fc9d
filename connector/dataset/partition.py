"""Publishing one snapshot date: one data file per partition, replaced atomically, on any store.

    model_versions/snapshot_date=YYYY-MM-DD/part-00000.parquet   the day's rows (its footer holds
                                                                 the manifest of the run that
                                                                 wrote it)
    model_versions/snapshot_date=YYYY-MM-DD/_manifest.json       the same manifest, for readers
    _staging/<run_id>/part-00000.parquet                         the day being staged
    _staging/<run_id>/publish.json                               the journal of a publish

A day is staged whole, outside the dataset, as one data file whose footer carries the run's
manifest (`stage_day`); the publish checks that the staged file is exactly what was written,
writes a journal, then replaces the partition's data file with it in one atomic step (a rename
locally, a server-side copy on object storage): a reader sees the whole old file or the whole new
one, never a mix and never a half-written file. `_manifest.json` is written next, then staging
is removed. A run killed between the two leaves a partition whose data file is new and whose
`_manifest.json` is old: `read_manifest` trusts the one whose run wrote the data file, and the
next run (`recover`) rewrites `_manifest.json` from the journal. Nothing else can be left half
done: the staged file is invisible to readers, and the next run deletes it.

A partition written by an earlier version of the connector may hold its data under another name
(`part-<run>-00000.parquet`): the new file takes that name, so the swap stays one atomic step;
one holding several data files is handed to `connector.dataset.legacy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from connector.dataset import delta, held, legacy
from connector.dataset.datafile import DataFileWriter, encode, read_footer
from connector.dataset.layout import (
    DATA_NAME,
    DATASET_DIR,
    MANIFEST_NAME,
    PARTITION_PREFIX,
    STAGING_DIR,
    partition_path,
    staging_path,
)
from connector.dataset.state import parse_json
from connector.dataset.store import OUTPUT_ERRORS, Store
from connector.errors import OutputError
from connector.loggers import get_logger

log = get_logger(__name__)

JOURNAL_NAME = "publish.json"
_JOURNAL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class PublishResult:
    """What a publish put in place."""

    partition: str  # as a person would type it
    files: list[str]
    rows: int


def open_day_writer(store: Store, run_id: str, *, batch_rows: int) -> DataFileWriter:
    """The writer of a day's one data file, in the run's staging directory."""
    return DataFileWriter(store, staging_path(run_id), batch_rows=batch_rows, single_name=DATA_NAME)


def staged_file(run_id: str) -> str:
    """Where `open_day_writer` puts the day's data file."""
    return f"{staging_path(run_id)}/{DATA_NAME}"


def check_staged(store: Store, run_id: str, rows: int) -> None:
    """The staged file must be what was written: a short or foreign file never goes out."""
    footer = read_footer(store, staged_file(run_id)) or {}
    if footer.get("run_id") != run_id or footer.get("rows") != rows:
        raise OutputError(
            f"staged file {store.display(staged_file(run_id))} holds {footer.get('rows')} rows "
            f"of run {footer.get('run_id')}, expected {rows} of {run_id}; nothing was published"
        )


def data_files(store: Store, day: date) -> list[str]:
    """The names of a partition's data files (`*.parquet`, never hidden or temporary names)."""
    return [
        entry.name
        for entry in store.list(partition_path(day))
        if entry.name.endswith(".parquet") and not entry.name.startswith(("_", "."))
    ]


class Publisher(Protocol):
    """How one table format puts a staged, checked day in place in one atomic step (after a
    journal naming the run: the one step a kill can leave half done is finished by `recover`).
    """

    def replace(
        self, store: Store, day: date, run_id: str, manifest: dict[str, Any], source: str
    ) -> dict[str, Any]:
        """Swap the data file `source` (the run's staged file, or a held day's) in; returns
        the facts the manifest gains (`files`...)."""

    def swapped(self, store: Store, day: date, run_id: str) -> bool:
        """Whether the swap of run `run_id` (a killed run's) is what the day now holds."""

    def manifest_path(self, day: date) -> str:
        """Where the day's manifest is kept for readers."""


class HivePublisher:
    """`output.format: parquet`: the partition's one data file, replaced by an atomic move."""

    def replace(
        self, store: Store, day: date, run_id: str, manifest: dict[str, Any], source: str
    ) -> dict[str, Any]:
        partition = partition_path(day)
        existing = data_files(store, day)
        name = existing[0] if len(existing) == 1 else DATA_NAME  # an earlier version's name stays
        manifest = {**manifest, "files": [name]}
        if len(existing) > 1:
            if source != staged_file(run_id):  # a held file stays where it is until the end
                store.copy(source, staged_file(run_id))
            legacy.replace_multifile_partition(store, day, staged_file(run_id), manifest)
        else:
            journal = {"partition": partition, "data": name, "run_id": run_id, "manifest": manifest}
            store.put(f"{staging_path(run_id)}/{JOURNAL_NAME}", encode(journal))
            store.move(source, f"{partition}/{name}")
        return {"files": [name]}

    def swapped(self, store: Store, day: date, run_id: str) -> bool:
        names = data_files(store, day)
        footer = read_footer(store, f"{partition_path(day)}/{names[0]}") if names else None
        return (footer or {}).get("run_id") == run_id

    def manifest_path(self, day: date) -> str:
        return f"{partition_path(day)}/{MANIFEST_NAME}"


class DeltaPublisher:
    """`output.format: delta`: one commit to the table (`connector.dataset.delta`)."""

    def replace(
        self, store: Store, day: date, run_id: str, manifest: dict[str, Any], source: str
    ) -> dict[str, Any]:
        journal = {
            "format": "delta",
            "partition": partition_path(day),
            "run_id": run_id,
            "manifest": manifest,
        }
        store.put(f"{staging_path(run_id)}/{JOURNAL_NAME}", encode(journal))
        files, version = delta.replace_day(store, day, source, manifest)
        return {"files": files, "delta_version": version}

    def swapped(self, store: Store, day: date, run_id: str) -> bool:
        return delta.committed(store, run_id)

    def manifest_path(self, day: date) -> str:
        return delta.manifest_path(day)


PUBLISHERS: dict[str, Publisher] = {"parquet": HivePublisher(), "delta": DeltaPublisher()}


def dataset_format(store: Store) -> str | None:
    """The format the output holds: "delta" (a table's log), "parquet" (Hive partitions), or
    None (nothing published yet)."""
    entries = store.list(DATASET_DIR)
    if delta.table_in(store, entries):
        return "delta"
    return "parquet" if any(entry.name.startswith(PARTITION_PREFIX) for entry in entries) else None


def check_format(store: Store, wanted: str) -> None:
    """Refuse to publish one format into an output that holds the other (a Parquet file among
    a table's files would be invisible to Delta readers and deleted by its vacuum; a table's
    files would be read as duplicates by Hive readers). Nothing is changed."""
    found = dataset_format(store)
    if found is not None and found != wanted:
        raise OutputError(
            f"{store.display(DATASET_DIR)} holds a {_FORMAT_NAMES[found]}, but output.format is "
            f"{wanted}: set output.format: {found}, or give the {wanted} dataset an output.uri "
            "of its own; nothing was changed"
        )


_FORMAT_NAMES = {"parquet": "Parquet (Hive-partitioned) dataset", "delta": "Delta table"}


def publish_day(
    store: Store,
    day: date,
    run_id: str,
    manifest: dict[str, Any],
    *,
    table_format: str | None = None,
    source: str | None = None,
) -> PublishResult:
    """Replace the day with the run's staged, checked data file (or `source`, a held day's
    file whose footer names `run_id`) and write its manifest, in the output's format
    (`table_format`; None: the format the output already holds, else parquet). Raises
    OutputError with the published day untouched until the swap."""
    table_format = table_format or dataset_format(store) or "parquet"
    check_format(store, table_format)
    publisher = PUBLISHERS[table_format]
    facts = publisher.replace(store, day, run_id, manifest, source or staged_file(run_id))
    manifest = {**manifest, **facts}
    partition = partition_path(day)
    # Published: from here on nothing may report failure, or the summary would lie.
    try:
        store.put(publisher.manifest_path(day), encode(manifest))
    except OUTPUT_ERRORS as exc:
        log.warning("published %s, but %s; the next run repairs it", partition, exc)
    discard_staging(store, run_id)
    return PublishResult(store.display(partition), facts["files"], int(manifest.get("rows") or 0))


def discard_staging(store: Store, run_id: str) -> None:
    """Remove what a run staged (never fails: leftovers are only space, the next run removes
    them)."""
    try:
        store.delete_tree(staging_path(run_id))
    except OUTPUT_ERRORS as exc:
        log.warning("could not remove %s: %s", store.display(staging_path(run_id)), exc)


def recover(store: Store) -> list[str]:
    """Finish or discard what earlier, interrupted runs left in `_staging/` (call under the
    output lock); returns what was done, for the log. A publish journal means a publish got as
    far as the swap: `_manifest.json` is brought in line with the partition's data file; a hold
    journal means a check held the day: its move to `_held/` is completed. `_held/` itself is
    never touched here."""
    actions: list[str] = []
    for entry in store.list(STAGING_DIR):
        path = f"{STAGING_DIR}/{entry.name}"
        if entry.kind == "dir":
            actions += held.finish_hold(store, path)  # a held day is moved, never deleted
            actions += _finish(store, path)
            actions += legacy.recover_old_journal(store, path)
        store.delete_tree(path)  # a link or file is removed itself, never followed
        actions.append(f"removed leftover staging {entry.name}")
    return actions


def _finish(store: Store, work: str) -> list[str]:
    raw = store.get(f"{work}/{JOURNAL_NAME}", limit=_JOURNAL_BYTES)
    if raw is None:
        return []
    shown = store.display(f"{work}/{JOURNAL_NAME}")
    journal = parse_json(raw, shown)
    partition, name, table_format = (
        journal.get(k) if isinstance(journal, dict) else None
        for k in ("partition", "data", "format")
    )
    manifest = journal.get("manifest") if isinstance(journal, dict) else None
    if not (
        isinstance(partition, str)
        and isinstance(manifest, dict)
        and isinstance(manifest.get("run_id"), str)
        and legacy.is_partition_path(partition)
        and (table_format == "delta" or (isinstance(name, str) and _plain(name)))
    ):
        raise OutputError(
            f"the publish journal {shown} is not of the expected shape; check the dataset by "
            f"hand, then delete {store.display(work)} and run again (nothing was changed)"
        )
    publisher = PUBLISHERS["delta" if table_format == "delta" else "parquet"]
    day = _day_of(partition)
    if not publisher.swapped(store, day, manifest["run_id"]):
        return []  # the swap never happened: the day is the previous one, whole
    target = publisher.manifest_path(day)
    current = store.get(target)
    try:
        same = current is not None and parse_json(current, "").get("run_id") == manifest["run_id"]
    except (OutputError, AttributeError):
        same = False
    if same:
        return []
    store.put(target, encode(manifest))
    return [f"rewrote {store.display(target)} from the publish journal"]


def _day_of(partition: str) -> date:
    return date.fromisoformat(partition.rsplit("=", 1)[-1])


def _plain(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def read_manifest(store: Store, day: date) -> dict[str, Any] | None:
    """The manifest of one published day, or None when it has none. `_manifest.json` unless
    the data it describes is no longer what is published (a publish killed between the swap
    and the manifest): then the manifest of the run whose data is published wins (in the data
    file's footer; for a Delta table, in the journal of the run whose commit landed)."""
    partition = partition_path(day)
    is_table = delta.is_table(store)
    path = delta.manifest_path(day) if is_table else f"{partition}/{MANIFEST_NAME}"
    raw = store.get(path)
    shown = store.display(path)
    manifest = None if raw is None else parse_json(raw, shown)
    if manifest is not None and not isinstance(manifest, dict):
        raise OutputError(f"{shown} does not hold a JSON object")
    if is_table:
        newer = _committed_journal(store, day)
        stale = newer is not None and (manifest or {}).get("run_id") != newer.get("run_id")
        return newer if stale else manifest
    names = data_files(store, day)
    footer = read_footer(store, f"{partition}/{names[0]}") if len(names) == 1 else None
    if footer is not None and (manifest is None or manifest.get("run_id") != footer.get("run_id")):
        return footer
    return manifest


def _committed_journal(store: Store, day: date) -> dict[str, Any] | None:
    """The manifest in a killed run's journal for `day` whose Delta commit landed (rare: the
    journal exists only until the next run's `recover`)."""
    for entry in store.list(STAGING_DIR):
        if entry.kind != "dir":
            continue
        raw = store.get(f"{STAGING_DIR}/{entry.name}/{JOURNAL_NAME}", limit=_JOURNAL_BYTES)
        journal = None if raw is None else parse_json(raw, store.display(STAGING_DIR))
        if not isinstance(journal, dict) or journal.get("partition") != partition_path(day):
            continue
        manifest = journal.get("manifest")
        if not isinstance(manifest, dict) or not isinstance(manifest.get("run_id"), str):
            continue
        if delta.committed(store, manifest["run_id"]):
            return manifest
    return None
