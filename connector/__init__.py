"""The model-versions connector: snapshots a model registry's version lists into Parquet.

The public library API; the `connector` command line is a thin shell over exactly these. Names
resolve on first use (PEP 562), so importing `connector` (and `connector --help`) does not load
pandas or pyarrow until a function that needs them is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from connector._version import __version__

if TYPE_CHECKING:
    from connector.checks.status import DatasetStatus, status
    from connector.config import Config, load_config
    from connector.dataset.reader import load_snapshots
    from connector.dataset.schema import DATASET_SCHEMA, FILE_SCHEMA, SCHEMA_VERSION
    from connector.errors import ConnectorError, ExitCode, NoDataError
    from connector.extraction.decide import accept, discard
    from connector.extraction.guards import SnapshotDateError
    from connector.extraction.interrupt import Interrupt
    from connector.extraction.maintenance import maintain
    from connector.extraction.publish import publish
    from connector.extraction.run import extract
    from connector.extraction.summary import RunSummary
    from connector.reporting.analytics import Report, compute_report, report
    from connector.reporting.render import write_report

_EXPORTS: dict[str, str] = {
    "DATASET_SCHEMA": "connector.dataset.schema",
    "FILE_SCHEMA": "connector.dataset.schema",
    "SCHEMA_VERSION": "connector.dataset.schema",
    "Config": "connector.config",
    "DatasetStatus": "connector.checks.status",
    "ConnectorError": "connector.errors",
    "ExitCode": "connector.errors",
    "Interrupt": "connector.extraction.interrupt",
    "NoDataError": "connector.errors",
    "Report": "connector.reporting.analytics",
    "RunSummary": "connector.extraction.summary",
    "SnapshotDateError": "connector.extraction.guards",
    "accept": "connector.extraction.decide",
    "compute_report": "connector.reporting.analytics",
    "discard": "connector.extraction.decide",
    "extract": "connector.extraction.run",
    "load_config": "connector.config",
    "load_snapshots": "connector.dataset.reader",
    "maintain": "connector.extraction.maintenance",
    "publish": "connector.extraction.publish",
    "report": "connector.reporting.analytics",
    "status": "connector.checks.status",
    "write_report": "connector.reporting.render",
}

__all__ = [
    "DATASET_SCHEMA",
    "FILE_SCHEMA",
    "SCHEMA_VERSION",
    "Config",
    "ConnectorError",
    "DatasetStatus",
    "ExitCode",
    "Interrupt",
    "NoDataError",
    "Report",
    "RunSummary",
    "SnapshotDateError",
    "__version__",
    "accept",
    "compute_report",
    "discard",
    "extract",
    "load_config",
    "load_snapshots",
    "maintain",
    "publish",
    "report",
    "status",
    "write_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'connector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return __all__
