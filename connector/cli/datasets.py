"""The dataset a reading command (`report`, `status`) reads: `--data`, `--config` and
`--storage-option`, resolved the same way for each."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import click

from connector.config import load_output_settings, validate_output
from connector.dataset.locate import is_object_uri, open_store
from connector.dataset.objectstore import STORAGE_OPTION_KEYS
from connector.dataset.store import Store
from connector.errors import ConfigError
from connector.redaction import printable

_CLI_OPTIONS = "output.storage_options."


def dataset_store(
    data: str | None,
    config_path: str | os.PathLike[str] | None,
    given: Mapping[str, str] | None = None,
) -> Store:
    """`--data` wins; otherwise the config's `output.uri` (only the `output` section is read:
    no token is needed).
    For an s3:// dataset the config's `output.storage_options` apply, each overridden by a
    `--storage-option` of the same key, and the result is validated as the config's would be."""
    if not data and config_path is None:
        raise click.UsageError(
            "give the dataset with --data URI, or --config FILE to use its output.uri"
        )
    options: dict[str, Any] = {}
    from_cli = bool(data)
    if config_path is not None:
        settings = load_output_settings(config_path)
        data = data or settings.uri
        options = settings.storage_mapping()
    assert data is not None
    given = given or {}
    if not is_object_uri(data):
        if given:
            raise click.UsageError("--storage-option only applies to an s3:// dataset")
        return open_store(data)
    try:
        checked = validate_output({"uri": data, "storage_options": {**options, **given} or None})
    except ConfigError as exc:
        raise ConfigError([_option_named(p, given, from_cli) for p in exc.problems]) from exc
    return open_store(data, checked.storage_mapping())


def _option_named(problem: str, given: Mapping[str, str], data_given: bool) -> str:
    """A problem found in a value typed on the command line names the option, not the config
    key it stands for (`--storage-option endpoint_url: ...`, `--data: ...`)."""
    key, _, rest = problem.partition(": ")
    if key.startswith(_CLI_OPTIONS) and key[len(_CLI_OPTIONS) :] in given:
        return f"--storage-option {key[len(_CLI_OPTIONS) :]}: {rest}"
    if key == "output.uri" and data_given:
        return f"--data: {rest}"
    return problem


def _storage_options(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    """`--storage-option KEY=VALUE`, repeatable; the keys are `output.storage_options`'."""
    options: dict[str, str] = {}
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"{printable(value)!r}: expected KEY=VALUE, KEY one of "
                f"{', '.join(STORAGE_OPTION_KEYS)}"
            )
        if key in options:
            raise click.BadParameter(f"{printable(key)} is given more than once")
        options[key] = setting
    return options


storage_option = click.option(
    "--storage-option",
    "storage_options",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_storage_options,
    help="An s3:// dataset's output.storage_options setting, e.g. "
    "endpoint_url=http://minio:9000 (repeatable; wins over --config's).",
)
