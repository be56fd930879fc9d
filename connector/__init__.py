"""The model-versions connector: snapshots a model registry's version lists into Parquet.

The public library API; the `connector` command line is a thin shell over exactly these.
"""

from connector._version import __version__
from connector.analytics import Report, compute_report, report
from connector.config import Config, load_config
from connector.dataset import load_snapshots
from connector.errors import ConnectorError, ExitCode
from connector.extraction import extract
from connector.schema import DATASET_SCHEMA, FILE_SCHEMA, SCHEMA_VERSION
from connector.summary import RunSummary

__all__ = [
    "DATASET_SCHEMA",
    "FILE_SCHEMA",
    "SCHEMA_VERSION",
    "Config",
    "ConnectorError",
    "ExitCode",
    "Report",
    "RunSummary",
    "__version__",
    "compute_report",
    "extract",
    "load_config",
    "load_snapshots",
    "report",
]
