"""`connector maintain`: compaction and vacuum of a Delta dataset, under the output lock.

A table that is published one day at a time gathers small files, and every re-run, optimize or
killed publish leaves files behind that no current version reads; time travel needs them until
they are vacuumed. Maintenance is a separate, explicit step (cron or Airflow, weekly) so the
retention it enforces is the operator's choice: `vacuum_days` is how far back time travel keeps
working afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

from connector.config import OutputSettings
from connector.dataset import delta, partition
from connector.dataset.layout import DATASET_DIR, LOCK_NAME
from connector.dataset.locate import output_store
from connector.errors import ConfigError, OutputError
from connector.loggers import get_logger

log = get_logger(__name__)


def maintain(
    output: OutputSettings,
    *,
    optimize: bool = False,
    vacuum_days: int | None = None,
) -> dict[str, Any]:
    """Compact the Delta table's small files (`optimize`) and/or delete the files that no
    version of the last `vacuum_days` days references (also those a killed publish left), as
    one holder of the output lock; returns what was done (files added and removed, the table
    version before and after). Time travel to a version older than `vacuum_days` no longer
    works afterwards.

    `output` is a config's `output` section: `config.output`, or `load_output_settings(path)`
    (which needs no registry token). Raises ConfigError when neither is asked for,
    `vacuum_days` is negative, or output.format is not delta; LockHeldError when a run holds
    the output; OutputError when the output is not a Delta table or delta-rs fails.
    """
    problems = []
    if output.format != "delta":
        problems.append("output.format: maintain works on a Delta table (output.format: delta)")
    if not optimize and vacuum_days is None:
        problems.append("nothing to do: ask for --optimize and/or --vacuum-days N")
    if vacuum_days is not None and vacuum_days < 0:
        problems.append(f"--vacuum-days must be 0 or more, got {vacuum_days}")
    if problems:
        raise ConfigError(problems)
    store = output_store(output.uri, output.storage_mapping())
    with store.lock(LOCK_NAME, uuid.uuid4().hex):
        for action in partition.recover(store):
            log.warning("%s", action, extra={"event": "staging_recovered"})
        if not delta.is_table(store):
            raise OutputError(f"{store.display()} holds no Delta table yet: nothing to maintain")
        done = delta.maintain(store, optimize=optimize, vacuum_days=vacuum_days)
    log.info("maintained %s: %s", store.display(), done, extra={"event": "maintained"})
    return {"table": store.display(DATASET_DIR), **done}
