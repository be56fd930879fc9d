"""`ObjectStore`: the Store of a dataset under an object-storage prefix (`s3://bucket/prefix`).

Everything goes through `pyarrow.fs.S3FileSystem` (built into pyarrow, so object storage costs
no new dependency). Credentials are never passed here: the AWS SDK inside pyarrow takes them
from its standard chain (environment, ~/.aws files, instance or container role), so they never
go through the config, a log line or an error message of ours. `output.storage_options` carries
the non-secret settings (endpoint, region, addressing style, timeouts).

Object storage has no rename and needs none: an object appears whole when its PUT or its
multipart upload completes, and a server-side copy replaces a target object atomically. There
are no links to follow. A lock is a lease (`connector.dataset.lease`).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from connector.dataset.layout import LOCK_NAME
from connector.dataset.lease import LOCKS_DIR, Lease
from connector.dataset.store import SMALL_OBJECT_BYTES, STORAGE_ERRORS, Entry, Kind
from connector.errors import ConfigError, OutputError

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
        # A small object (a marker, a manifest, a record) goes up in one PutObject instead of a
        # multipart upload's three requests; a failure then shows at the first write or at
        # the close, where every caller already turns it into an OutputError.
        "allow_delayed_open": True,
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


def _kind(kind: pafs.FileType) -> Kind:
    if kind == pafs.FileType.Directory:
        return "dir"
    return "file" if kind == pafs.FileType.File else "other"


def _entry(info: pafs.FileInfo) -> Entry:
    mtime = info.mtime_ns if info.type == pafs.FileType.File else None
    size = info.size if info.type == pafs.FileType.File else None
    return Entry(info.base_name, _kind(info.type), size, mtime)


class _ObjectSink:
    """A multipart upload: the object appears, whole, when the stream is closed."""

    def __init__(self, store: ObjectStore, path: str) -> None:
        self._store = store
        self._path = path
        self._stream = store.filesystem.open_output_stream(store.native(path))
        self._done = False

    @property
    def stream(self) -> Any:
        return self._stream

    def commit(self) -> None:
        self._done = True
        self._stream.close()  # completes the upload

    def abort(self) -> None:
        """pyarrow cannot abort an upload: closing completes a partial object, which is
        deleted at once (it was never named by anything a reader uses)."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(*STORAGE_ERRORS):
            self._stream.close()
        with contextlib.suppress(*STORAGE_ERRORS):
            self._store.delete(self._path)


class ObjectStore:
    """A dataset under `s3://bucket/prefix` (see the module docstring)."""

    is_local = False

    def __init__(self, uri: str, storage_options: Mapping[str, Any]) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc or "@" in parts.netloc:
            raise ConfigError(["output.uri: must be s3://bucket[/prefix] (no user@ part)"])
        self.uri = uri
        self.options = dict(storage_options)
        self.root = "/".join(p for p in [parts.netloc, *parts.path.split("/")] if p)
        self.filesystem: pafs.FileSystem = s3_filesystem(self.options)

    def __repr__(self) -> str:
        return f"ObjectStore({self.uri!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its URI and options in another process (its own AWS client there)."""
        return (ObjectStore, (self.uri, self.options))

    def native(self, path: str) -> str:
        parts = [part for part in path.split("/") if part]
        if any(part in (".", "..") for part in parts):
            raise OutputError(f"refusing the path {path!r}: not a plain key")
        return "/".join([self.root, *parts])

    def display(self, path: str = "") -> str:
        return f"s3://{self.native(path)}"

    def _failed(self, what: str, path: str, exc: BaseException) -> OutputError:
        return OutputError(f"cannot {what} {self.display(path)}: {exc}{endpoint_hint(exc)}")

    def put(self, path: str, data: bytes, *, mode: int = 0o666) -> None:
        try:
            with self.filesystem.open_output_stream(self.native(path)) as stream:
                stream.write(data)
        except STORAGE_ERRORS as exc:
            raise self._failed("write", path, exc) from exc

    def get(self, path: str, *, limit: int = SMALL_OBJECT_BYTES) -> bytes | None:
        try:
            with self.filesystem.open_input_stream(self.native(path)) as stream:
                data = bytes(stream.read(limit + 1))
        except FileNotFoundError:
            return None
        except STORAGE_ERRORS as exc:
            raise self._failed("read", path, exc) from exc
        if len(data) > limit:
            raise OutputError(
                f"{self.display(path)} is larger than {limit} bytes: not an object of the connector"
            )
        return data

    def open_sink(self, path: str) -> _ObjectSink:
        if self._object_exists(path):
            raise OutputError(f"cannot write {self.display(path)}: it exists already")
        try:
            return _ObjectSink(self, path)
        except STORAGE_ERRORS as exc:
            raise self._failed("write", path, exc) from exc

    def list(self, path: str) -> list[Entry]:
        selector = pafs.FileSelector(self.native(path), allow_not_found=True, recursive=False)
        try:
            infos = self.filesystem.get_file_info(selector)
        except STORAGE_ERRORS as exc:
            raise self._failed("list", path, exc) from exc
        return sorted((_entry(info) for info in infos), key=lambda entry: entry.name)

    def info(self, path: str) -> Entry | None:
        try:
            info = self.filesystem.get_file_info(self.native(path))
        except STORAGE_ERRORS as exc:
            raise self._failed("inspect", path, exc) from exc
        return None if info.type == pafs.FileType.NotFound else _entry(info)

    def _object_exists(self, path: str) -> bool:
        """Whether an object has this key: one HEAD (`info` adds a LIST when there is none, to
        tell a directory, which a data file's key never is)."""
        try:
            self.filesystem.open_input_file(self.native(path)).close()
        except FileNotFoundError:
            return False
        except STORAGE_ERRORS as exc:
            raise self._failed("inspect", path, exc) from exc
        return True

    def copy(self, source: str, target: str) -> None:
        try:
            self.filesystem.copy_file(self.native(source), self.native(target))
        except STORAGE_ERRORS as exc:
            raise self._failed("copy to", target, exc) from exc

    def move(self, source: str, target: str) -> None:
        self.copy(source, target)
        self.delete(source)

    def delete(self, path: str) -> None:
        try:
            self.filesystem.delete_file(self.native(path))
        except FileNotFoundError:
            pass
        except STORAGE_ERRORS as exc:
            raise self._failed("delete", path, exc) from exc

    def delete_tree(self, path: str) -> None:
        # No probe first: pyarrow's delete_dir makes its own (a missing tree is
        # FileNotFoundError, a file an OSError), and a probe cost a HEAD and a LIST more.
        try:
            self.filesystem.delete_dir(self.native(path))
        except FileNotFoundError:
            pass
        except STORAGE_ERRORS as exc:
            raise self._failed("delete", path, exc) from exc

    def lock(self, name: str, run_id: str) -> Lease:
        # The output's lock keeps the layout of earlier versions: markers under `_locks/`.
        scope = LOCKS_DIR if name == LOCK_NAME else name
        return Lease(self, run_id, scope=scope)
