"""Which store a dataset URI names: a local directory or an object-storage prefix."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from connector.dataset.localstore import LocalStore
from connector.dataset.objectstore import ObjectStore
from connector.dataset.store import Store
from connector.errors import ConfigError


def is_object_uri(uri: str) -> bool:
    """True for the object-storage URIs this connector writes to (s3://)."""
    return urlsplit(uri).scheme == "s3"


def open_store(
    uri: str | os.PathLike[str] | Store, storage_options: Mapping[str, Any] | None = None
) -> Store:
    """The store for a dataset URI: a local path or `file://` URI, or `s3://bucket/prefix`
    (with `storage_options`, non-secret settings only); a Store is returned as it is."""
    if not isinstance(uri, str | os.PathLike):
        return uri
    text = os.fspath(uri)
    scheme = urlsplit(text).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # len 1: a Windows drive letter
        if storage_options:
            raise ConfigError(["output.storage_options: only apply to s3:// URIs"])
        return LocalStore(text)
    if scheme == "s3":
        return ObjectStore(text, storage_options or {})
    raise ConfigError([f"output.uri: {scheme}:// is not supported (local paths, file://, s3://)"])


def output_store(uri: str, storage_options: Mapping[str, Any]) -> Store:
    """The store of a run's output: the config's `storage_options` apply to an s3:// URI (also
    one given by `--output`) and are ignored for a local one."""
    return open_store(uri, storage_options if is_object_uri(uri) else None)
