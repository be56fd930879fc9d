"""Where a dataset lives: one filesystem layer (pyarrow.fs) for every reader and writer.

`locate(uri, storage_options)` turns the configured `output.uri` into a `Location`: a
`pyarrow.fs.FileSystem` and the root path inside it. Local paths and `file://` URIs get the local
filesystem; `s3://bucket/prefix` gets `pyarrow.fs.S3FileSystem` (built into pyarrow, so object
storage costs no new dependency). Credentials are never passed here: the AWS SDK inside pyarrow
takes them from its standard chain (environment, ~/.aws files, instance or container role), so
they never go through the config, a log line or an error message of ours.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from connector.errors import ConfigError

# The non-secret settings `output.storage_options` may carry (validated in connector.config).
STORAGE_OPTION_KEYS = (
    "endpoint_url",
    "region",
    "addressing_style",
    "connect_timeout_seconds",
    "request_timeout_seconds",
)
# The standard AWS SDK variables for a custom endpoint, the service-specific one first.
ENDPOINT_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class Location:
    """A dataset root: the filesystem that holds it and the path of the root inside it."""

    uri: str
    filesystem: pafs.FileSystem
    path: str
    is_local: bool

    def join(self, *parts: str) -> str:
        """A path under the root, in the filesystem's own syntax ('/'-separated for objects)."""
        if self.is_local:
            return str(Path(self.path, *parts))
        return "/".join([self.path.rstrip("/"), *parts])

    def display(self, path: str) -> str:
        """A path inside this location as a person would type it (s3://... for objects)."""
        return path if self.is_local else f"s3://{path}"

    @property
    def local_path(self) -> Path:
        """The root as a local Path; only for local locations."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not a local path")
        return Path(self.path)


_LOCAL = pafs.LocalFileSystem()


def local_root(uri: str | os.PathLike[str]) -> Path:
    """The local directory for an output URI (a path or a file:// URI). An s3:// URI is refused
    here, so code that only knows local paths can never create a local `s3:` directory."""
    text = os.fspath(uri)
    parts = urlsplit(text)
    if parts.scheme == "s3":
        raise ConfigError([f"{text}: this operation supports local paths only, not s3://"])
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(text).expanduser()  # `~/data` is the user's, never a folder named `~`


def local_location(path: Path) -> Location:
    """A Location for a local directory given as a Path (never parsed as a URI)."""
    return Location(str(path), _LOCAL, str(path), is_local=True)


def is_object_uri(uri: str) -> bool:
    """True for the object-storage URIs this connector writes to (s3://)."""
    return urlsplit(uri).scheme == "s3"


def locate(
    uri: str | os.PathLike[str] | Location, storage_options: Mapping[str, Any] | None = None
) -> Location:
    """The filesystem and root path for a dataset URI (a Location is returned as it is)."""
    if isinstance(uri, Location):
        return uri
    text = os.fspath(uri)
    parts = urlsplit(text)
    scheme = parts.scheme
    if scheme in ("", "file") or len(scheme) == 1:  # len 1: a Windows drive letter
        if storage_options:
            raise ConfigError(["output.storage_options: only apply to s3:// URIs"])
        return Location(text, _LOCAL, str(local_root(text)), is_local=True)
    if scheme == "s3":
        if not parts.netloc or "@" in parts.netloc:
            raise ConfigError(["output.uri: must be s3://bucket[/prefix] (no user@ part)"])
        path = "/".join(p for p in [parts.netloc, *parts.path.split("/")] if p)
        return Location(text, s3_filesystem(storage_options or {}), path, is_local=False)
    raise ConfigError([f"output.uri: {scheme}:// is not supported (local paths, file://, s3://)"])


def locate_output(uri: str, storage_options: Mapping[str, Any]) -> Location:
    """The Location of a run's output: the config's `storage_options` apply to an s3:// URI
    (also one given by `--output`) and are ignored for a local one."""
    return locate(uri, storage_options if is_object_uri(uri) else None)


def s3_filesystem(options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Any:
    """An S3FileSystem from the non-secret options; credentials come from the AWS chain."""
    environ = os.environ if env is None else env
    endpoint = options.get("endpoint_url") or next(
        (environ[name] for name in ENDPOINT_ENV if environ.get(name)), None
    )
    kwargs: dict[str, Any] = {
        "region": options.get("region"),
        "force_virtual_addressing": options.get("addressing_style") == "virtual",
        "connect_timeout": options.get("connect_timeout_seconds", 10.0),
        "request_timeout": options.get("request_timeout_seconds", 60.0),
        "check_directory_existence_before_creation": True,
    }
    if endpoint:
        split = urlsplit(endpoint)
        if split.scheme not in ("http", "https") or not split.netloc or "@" in split.netloc:
            raise ConfigError(["S3 endpoint: must be http(s)://host[:port] (no user@ part)"])
        kwargs["endpoint_override"] = split.netloc
        kwargs["scheme"] = split.scheme
    return _s3_client(tuple(sorted((k, v) for k, v in kwargs.items() if v is not None)))


# How pyarrow's AWS SDK (curl underneath) says that a host name did not resolve.
_UNRESOLVED_HOST = ("Could not resolve host", "curlCode: 6,")


def endpoint_hint(error: BaseException | str) -> str:
    """The likely fix when an object-storage error says the S3 host did not resolve ("" for any
    other error): with no endpoint set, s3:// goes to AWS, and a MinIO/R2 user has forgotten to
    name theirs. A suffix for the error message, in one place for every caller."""
    if not any(marker in str(error) for marker in _UNRESOLVED_HOST):
        return ""
    return (
        "; the S3 host could not be resolved: name your S3 service with AWS_ENDPOINT_URL "
        "(or output.storage_options.endpoint_url in the config; `report --storage-option "
        "endpoint_url=URL`); without one, s3:// goes to AWS"
    )


@functools.lru_cache(maxsize=16)
def _s3_client(settings: tuple[tuple[str, Any], ...]) -> Any:
    """One S3FileSystem per distinct settings, reused: building an AWS client resolves the
    credential chain, and pyarrow makes a new client wait for requests already in flight."""
    return pafs.S3FileSystem(**dict(settings))


def list_entries(filesystem: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    """The direct children of a directory (or prefix); [] when it does not exist."""
    selector = pafs.FileSelector(path, allow_not_found=True, recursive=False)
    return list(filesystem.get_file_info(selector))


def read_bytes(filesystem: pafs.FileSystem, path: str) -> bytes | None:
    """A whole file in one read (one GET on object storage); None when it does not exist."""
    try:
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.read())
    except FileNotFoundError:
        return None


def put_bytes(filesystem: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a small object whole. On object storage an object appears complete or not at all
    (one PUT), so no temporary name is needed; local writes use `write_json_atomic` instead."""
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


def delete_tree(filesystem: pafs.FileSystem, path: str) -> None:
    """Remove a directory (or every object under a prefix); quiet when already gone."""
    with contextlib.suppress(FileNotFoundError):
        if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
            filesystem.delete_dir(path)


# Errors the filesystem layer raises for I/O problems (pyarrow maps AWS errors to OSError).
STORAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, pa.ArrowException)
