"""The run context: what one run knows before its first request, built once and never changed.

`Config` stops at the top of a run: `RunContext.build` reads from it everything the stages below
need about the output and the run (the store, the day, the run id, batch size, the publish
guard's ratio, the secrets to scrub, the registry's API root, the fingerprint that ties staged
parts to one configuration, which models the config covers, the publish checks' thresholds),
and passes this small frozen value down instead. Only the fetching of targets still reads the
registry and org settings, which are what it is about. A context pickles (its store rebuilds
itself), so part processes get it as is.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from connector.config import ChecksSettings, Config, validate_output
from connector.dataset.locate import output_store
from connector.dataset.store import Store
from connector.extraction.sharding import fingerprint


@dataclass(frozen=True)
class RunContext:
    """What every stage of one run shares (see the module docstring)."""

    store: Store
    day: date
    run_id: str
    started_at: str  # when the run began observing counts (UTC, ISO 8601)
    batch_rows: int
    min_success_ratio: float
    secrets: tuple[str, ...] = field(repr=False)
    registry: str  # the registry's API root
    fingerprint: str  # of the configuration a snapshot's parts must share
    covers: Callable[[str, str], bool]  # whether the config targets org/model when listed
    keep_run_records: int = 100
    table_format: str = "parquet"  # output.format: how a day is published
    backdated: bool = False
    replace: bool = False
    warnings: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)  # for the record
    checks: ChecksSettings = field(default_factory=ChecksSettings)  # before every publish

    @classmethod
    def build(
        cls,
        config: Config,
        day: date,
        *,
        output: str | None = None,
        observed_at: datetime | None = None,
        min_success_ratio: float | None = None,
        backdated: bool = False,
        replace: bool = False,
        settings: Mapping[str, Any] | None = None,
    ) -> RunContext:
        """The context of a run of `config` for `day`; `output` overrides `output.uri`."""
        uri = validate_output({"uri": output}).uri if output else config.output.uri
        ratio = config.output.min_success_ratio if min_success_ratio is None else min_success_ratio
        started = (observed_at or datetime.now(UTC)).astimezone(UTC)
        return cls(
            store=output_store(uri, config.output.storage_mapping()),
            day=day,
            run_id=uuid.uuid4().hex,
            started_at=started.isoformat(timespec="milliseconds"),
            batch_rows=config.output.batch_rows,
            min_success_ratio=ratio,
            secrets=tuple(config.secrets()),
            registry=config.registry.api_root,
            fingerprint=fingerprint(config, uri),
            covers=config.covers,
            keep_run_records=config.output.keep_run_records,
            table_format=config.output.format,
            backdated=backdated,
            replace=replace,
            warnings=tuple(config.warnings),
            settings=dict(settings or {}),
            checks=config.output.checks,
        )

    def evolve(self, **changes: Any) -> RunContext:
        """A copy with `changes` (a part's own run id, a publish's merged facts)."""
        return dataclasses.replace(self, **changes)
