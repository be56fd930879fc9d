"""Where a dataset lives: one filesystem layer (pyarrow.fs) for every reader and writer.

`locate(uri)` turns the configured `output.uri` into a `Location`: a `pyarrow.fs.FileSystem`
and the root path inside it. Readers (the dataset loader, the report's engine) go through it so
that a local path and object storage are read the same way. Today only local paths and
`file://` URIs are accepted; object storage plugs in here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from connector.errors import ConfigError


@dataclass(frozen=True)
class Location:
    """A dataset root: the filesystem that holds it and the path of the root inside it."""

    uri: str
    filesystem: pafs.FileSystem
    path: str
    is_local: bool

    def join(self, *parts: str) -> str:
        """A path under the root, in the filesystem's own syntax ('/'-separated)."""
        return "/".join([self.path.rstrip("/"), *parts])

    @property
    def local_path(self) -> Path:
        """The root as a local Path; only for local locations."""
        if not self.is_local:
            raise ValueError(f"{self.uri} is not a local path")
        return Path(self.path)


_LOCAL = pafs.LocalFileSystem()


def local_root(uri: str | os.PathLike[str]) -> Path:
    """The local directory for an output URI (a path or a file:// URI)."""
    text = os.fspath(uri)
    parts = urlsplit(text)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(text)


def locate(
    uri: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> Location:
    """The filesystem and root path for a dataset URI."""
    text = os.fspath(uri)
    scheme = urlsplit(text).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # len 1: a Windows drive letter
        return Location(text, _LOCAL, str(local_root(text)), is_local=True)
    raise ConfigError([f"output.uri: {scheme}:// is not supported (local paths and file://)"])
