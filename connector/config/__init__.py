"""The configuration: one YAML file, validated as a whole into immutable typed settings.

`load_config(path)` reads and validates a file (`loading`), whose sections are the models of
`registry` (the registry and the orgs) and `output` (the dataset, its format and checks), in one
`Config` (`document`); `source` reads the file itself defensively, `base` holds what every
setting shares. Everything a caller needs is importable from here.
"""

from __future__ import annotations

from connector.config.base import MODEL_PATTERN, ORG_PATTERN, SLUG_PROBLEM, is_pattern
from connector.config.document import Config
from connector.config.loading import (
    config_variables,
    interpolate,
    load_config,
    load_output_settings,
    parse_config,
    validate_output,
)
from connector.config.output import (
    CHECK_NAMES,
    ChecksSettings,
    OutputSettings,
    StorageOptions,
)
from connector.config.registry import OrgSettings, RegistrySettings, RetrySettings

__all__ = [
    "CHECK_NAMES",
    "MODEL_PATTERN",
    "ORG_PATTERN",
    "SLUG_PROBLEM",
    "ChecksSettings",
    "Config",
    "OrgSettings",
    "OutputSettings",
    "RegistrySettings",
    "RetrySettings",
    "StorageOptions",
    "config_variables",
    "interpolate",
    "is_pattern",
    "load_config",
    "load_output_settings",
    "parse_config",
    "validate_output",
]
