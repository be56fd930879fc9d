"""The `registry` and `orgs` sections: where the registry is, how to talk to it, and which models
of which orgs to snapshot."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from connector.config.base import (
    ModelEntry,
    OrgSlug,
    Settings,
    check_token,
    is_pattern,
    listed_twice,
)
from connector.credentials import AuthScheme


class RetrySettings(Settings):
    """How transient failures (429, 5xx, resets, timeouts) are retried."""

    max_attempts: int = Field(
        6, ge=1, le=50, description="attempts per request, the first included"
    )
    backoff_base_seconds: float = Field(
        0.5, gt=0, description="first backoff ceiling; doubles per attempt, full jitter"
    )
    backoff_max_seconds: float = Field(30.0, gt=0, description="cap of one backoff sleep")
    max_retry_after_seconds: float = Field(
        120.0,
        ge=0,
        description="cap on a server's `Retry-After` (seconds or HTTP date); a larger one is "
        "clamped, an unparseable one falls back to the backoff",
    )
    max_elapsed_seconds: float = Field(
        600.0,
        gt=0,
        description="time budget of one request's retries: no retry starts whose wait would "
        "end past it",
    )


class RegistrySettings(Settings):
    """Where the registry is and how to talk to it."""

    base_url: str = Field(
        description="`http(s)://host[:port][/prefix]` of the registry, with or without `/api` or "
        "`/api/v1` (all mean the API root `{base}/api/v1`); no `user:password@`, query or "
        "fragment"
    )
    token: SecretStr = Field(
        description="the token (an API key or a session token); write "
        "`${MODEL_REGISTRY_TOKEN}`, never a literal (one is accepted but warned about); "
        "whitespace or control characters (a CRLF env file) and non-ASCII characters are refused"
    )
    auth_scheme: AuthScheme = Field(
        "bearer",
        description="how the token is sent: `bearer` (`Authorization: Bearer`) or `api-key` "
        "(`X-API-Key`, as the registry's own client sends `dn_key_` keys); one header per call",
    )
    timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="total time for one HTTP attempt, status line, headers and body included "
        "(a server that drips bytes is cut off)",
    )
    connect_timeout_seconds: float = Field(10.0, gt=0, description="TCP/TLS connect timeout")
    concurrency: int = Field(8, ge=1, le=256, description="parallel requests (worker threads)")
    max_requests_per_second: float | None = Field(
        None,
        gt=0,
        description="client-side rate limit shared by all workers (and by the processes of "
        "`--processes`); unset: none",
    )
    max_response_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="a larger response body fails that model"
    )
    memory_budget_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="estimated memory the version lists being read, parsed and written may "
        "take at once, each counted at 10 x its body size (a body parses into about that "
        "much); a worker waits its turn (its attempt's clock paused), and a list larger than "
        "the whole budget is handled alone, so peak memory follows this budget, not "
        "`concurrency` x the largest body; per process (each of `--processes N` has its own)",
    )
    ca_bundle: Path | None = Field(
        None, description="PEM file of a private CA (TLS verification is always on)"
    )
    proxy: str | None = Field(
        None,
        description="HTTP(S) proxy URL, e.g. `${HTTPS_PROXY:-}` (empty = direct); environment "
        "proxies are not used unless written here",
    )
    retry: RetrySettings = Field(default_factory=RetrySettings)
    version_detail: Literal["missing", "all", "off"] = Field(
        "missing",
        description="per-version detail (`getModelVersion`): `missing` for each version listed "
        "as a plain string (the only way to its download count), `all` for every version, "
        "`off` never; see what a run costs in requests",
    )
    max_version_details: int = Field(
        1000,
        ge=1,
        description="at most this many getModelVersion calls per model, newest versions first; "
        "older versions past it keep null counts and the model is named in a warning",
    )

    @property
    def api_root(self) -> str:
        """The API root every request path starts from, `{server}/api/v1`: the registry's own
        client reads `https://host`, `https://host/api` and `https://host/api/v1` as the same
        root, behind a path prefix too, so a URL copied in any of these forms works and no
        request ever goes to `.../api/v1/api/v1/...`."""
        path = urlsplit(self.base_url).path
        if path.endswith("/api/v1"):
            return self.base_url
        if path.endswith("/api"):
            return f"{self.base_url}/v1"
        return f"{self.base_url}/api/v1"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        # The value itself is not echoed: it may carry user:password@ credentials.
        if parts.scheme not in ("http", "https"):
            given = f"not {parts.scheme}://" if parts.scheme else "no scheme given"
            raise ValueError(f"must be an http:// or https:// URL ({given})")
        if not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        try:
            _ = parts.port
        except ValueError as exc:  # non-numeric or out of range: fail here, not on every request
            raise ValueError(f"has an invalid port: {exc}") from exc
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry user:password@ (the token authenticates)")
        return value.rstrip("/")

    @field_validator("token")
    @classmethod
    def _usable_token(cls, value: SecretStr) -> SecretStr:
        return check_token(value, "is empty")

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # `${HTTPS_PROXY:-}`: no proxy when the variable is empty
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"has an invalid port: {exc}") from exc
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value


class OrgSettings(Settings):
    """One org and the models to snapshot in it."""

    name: OrgSlug
    models: list[ModelEntry] = Field(
        min_length=1,
        description="model slugs or glob patterns (`*`, `?`, `[...]`, case-sensitive), no "
        'duplicates; a pattern discovers the org\'s models through `listModels`, and `["*"]` '
        "is every model of the org",
    )
    exclude: list[ModelEntry] = Field(
        default_factory=list,
        description="slugs or patterns removed from the models a pattern discovered (never "
        "from exact slugs: an exclude that matches one is an error)",
    )
    token: SecretStr | None = Field(
        None, description="token for this org only; unset: `registry.token`"
    )
    auth_scheme: AuthScheme | None = Field(
        None,
        description="how this org's token is sent (`bearer` or `api-key`); unset: "
        "`registry.auth_scheme`",
    )
    include_public: bool = Field(
        False,
        description="discovery also asks for other orgs' public models (`include_public=true`); "
        "they are counted but never fetched as this org's",
    )

    @property
    def slugs(self) -> list[str]:
        """The models named exactly: fetched whether discovery lists them or not."""
        return [entry for entry in self.models if not is_pattern(entry)]

    @property
    def patterns(self) -> list[str]:
        """The glob patterns; any at all makes the run call listModels for this org."""
        return [entry for entry in self.models if is_pattern(entry)]

    def wants(self, model: str) -> bool:
        """Whether a discovered model is a target: it matches a pattern and no `exclude`."""
        return any(fnmatchcase(model, p) for p in self.patterns) and not self.excludes(model)

    def excludes(self, model: str) -> bool:
        """Whether an `exclude` entry matches the model."""
        return any(fnmatchcase(model, pattern) for pattern in self.exclude)

    @model_validator(mode="after")
    def _exclude_applies_to_patterns(self) -> OrgSettings:
        if self.exclude and not self.patterns:
            raise ValueError(
                "exclude: only removes models discovered through a pattern, and models has none"
            )
        named = [slug for slug in self.slugs if self.excludes(slug)]
        if named:
            raise ValueError(
                f"exclude: matches {', '.join(named)}, which models names exactly "
                "(remove one or the other)"
            )
        return self

    @field_validator("token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        return check_token(value, "is empty (leave the key out to use registry.token)")

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        duplicates = listed_twice(value)
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return value
