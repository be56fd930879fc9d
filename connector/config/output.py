"""The `output` section: where the dataset goes, in which format, and when a day may publish (the
success ratio and the checks)."""

from __future__ import annotations

import os
import re
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from connector.config.base import Settings

_SECRET_WORDS = ("key", "secret", "token", "password", "credential", "session")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageOptions(Settings):
    """Non-secret settings for object storage; credentials come from the AWS chain only."""

    endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint (MinIO, R2...), `http(s)://host[:port]`; "
        "`AWS_ENDPOINT_URL` works too",
    )
    region: str | None = Field(None, description="bucket region, e.g. eu-west-1")
    addressing_style: Literal["path", "virtual"] | None = Field(
        None, description="'path' or 'virtual' (bucket as host)"
    )
    connect_timeout_seconds: float | None = Field(None, gt=0, description="connect timeout")
    request_timeout_seconds: float | None = Field(None, gt=0, description="request timeout")

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, value: Any) -> Any:
        """A key that looks like a credential is refused by name (its value is never echoed):
        secrets in a config file end up in repositories and backups."""
        if isinstance(value, dict):
            secret = sorted(
                str(k) for k in value if any(w in str(k).lower() for w in _SECRET_WORDS)
            )
            if secret:
                raise ValueError(
                    f"{', '.join(secret)}: credentials never go in the config file; the "
                    "connector takes them from the standard AWS chain (AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ~/.aws, instance role)"
                )
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry user:password@ (credentials come from the AWS chain)")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError("must be http(s)://host[:port] only (no path or query)")
        return value

    def as_mapping(self) -> dict[str, Any]:
        """The options that are set, for `connector.dataset.locate.open_store`."""
        return self.model_dump(exclude_none=True)


CheckName = Literal[
    "coverage_config",
    "coverage_registry",
    "row_count",
    "counts_decreased",
    "counts_lost",
    "empty",
    "duplicates",
]
CHECK_NAMES: tuple[str, ...] = get_args(CheckName)  # in the order results are listed


class ChecksSettings(Settings):
    """The checks of a staged day against the last published day before it (and the config):
    a check that fails holds the publish (the day is kept under `_held/`, see `connector
    accept`). Shares are 0..1 and a check fails when its measure is larger than its limit."""

    disabled: list[CheckName] = Field(
        default_factory=list,
        description="checks switched off: still measured and recorded, with the verdict `off`; "
        "they hold nothing",
    )
    coverage_config_max_models: int = Field(
        0,
        ge=0,
        description="models of the previous snapshot that the config no longer asks for "
        "(a dropped org or model, a narrower pattern)",
    )
    coverage_registry_max_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="share of the previous snapshot's models absent for another reason (the "
        "registry no longer lists them, they failed, or they have no versions now)",
    )
    row_count_max_decrease: float = Field(
        0.10,
        ge=0,
        le=1,
        description="share by which the rows may go down from the previous snapshot",
    )
    counts_decreased_max_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="share of the versions in both snapshots whose `download_count` went down",
    )
    counts_lost_max_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="share of the versions in both snapshots whose count was known before and "
        "is null now",
    )

    @field_validator("disabled")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class OutputSettings(Settings):
    """Where the dataset goes and when a run may publish."""

    uri: str = Field(
        description="dataset root: a local path (`~` is expanded), a `file://` URI (empty host "
        "or `localhost` only) or `s3://bucket/prefix`"
    )
    format: Literal["parquet", "delta"] = Field(
        "parquet",
        description="`parquet`: Hive-partitioned Parquet files (`snapshot_date=YYYY-MM-DD/`); "
        "`delta`: one Delta Lake table partitioned by `snapshot_date` (a day's publish is one "
        "commit; time travel; see docs/dataset.md). An output holds one format: the other is "
        "refused",
    )
    storage_options: StorageOptions | None = Field(
        None,
        description="object storage settings (`s3://` only); a key that looks like a "
        "credential is refused: credentials come from the AWS chain only",
    )
    min_success_ratio: float = Field(
        0.9, ge=0, le=1, description="publish only if at least this share of targets succeeded"
    )
    batch_rows: int = Field(
        16_384,
        ge=100,
        description="rows per Parquet row group; rows are buffered (as Arrow) until one is "
        "full, so this bounds memory",
    )
    keep_run_records: int = Field(
        100,
        ge=1,
        description="run records kept under `<output.uri>/_runs/` (the newest; older ones are "
        "deleted)",
    )
    checks: ChecksSettings = Field(
        default_factory=ChecksSettings,
        description="the checks before every publish (empty and duplicates are checked on the "
        "first day too)",
    )

    @field_validator("uri")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty")
        parts = urlsplit(value)
        scheme = parts.scheme
        if scheme == "s3":
            if "@" in parts.netloc:
                raise ValueError("must not carry user@ (credentials come from the AWS chain)")
            if not _BUCKET.match(parts.netloc):
                raise ValueError("must be s3://bucket[/prefix] with a valid bucket name")
            if parts.query or parts.fragment:
                raise ValueError("must not carry a query string or fragment")
            return value
        if scheme not in ("", "file") and len(scheme) > 1:  # len 1: a Windows drive letter
            raise ValueError(
                f"only local paths, file:// and s3:// URIs are supported, got {scheme}://"
            )
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ValueError(
                f"file://{parts.netloc}/... names another host; only local paths are supported "
                "(file:///path or file://localhost/path)"
            )
        if value.startswith("~"):
            expanded = os.path.expanduser(value)
            if expanded.startswith("~"):
                raise ValueError(f"{value.split('/', maxsplit=1)[0]}: no such user to expand ~ for")
            return expanded
        return value

    @field_validator("storage_options")
    @classmethod
    def _unset_is_none(cls, value: StorageOptions | None) -> StorageOptions | None:
        """All-null options (as in the full sample) mean none: they equal the defaults."""
        return value if value is not None and value.as_mapping() else None

    @model_validator(mode="after")
    def _options_need_object_storage(self) -> OutputSettings:
        if self.storage_options is not None and urlsplit(self.uri).scheme != "s3":
            raise ValueError("storage_options only apply to an s3:// uri")
        return self

    def storage_mapping(self) -> dict[str, Any]:
        """`storage_options` as a plain mapping ({} when unset)."""
        return self.storage_options.as_mapping() if self.storage_options else {}
