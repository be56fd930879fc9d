"""Read the YAML configuration, interpolate `${ENV_VAR}`, validate into immutable typed settings.

Every problem is reported at once, each with its key path (`orgs[1].models[0]: ...`), so a
broken file is fixed in one round trip rather than one error at a time.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connector.config_source import key_path, load_yaml, quote_problem, read_config_text
from connector.credentials import AuthScheme, Credential, api_key_warning
from connector.errors import ConfigError

ORG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
_ENV_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

OrgSlug = Annotated[str, Field(pattern=ORG_PATTERN, description="org slug, as in the API path")]
ModelSlug = Annotated[str, Field(pattern=MODEL_PATTERN, description="model slug, without org")]

SLUG_PROBLEM = "not a valid slug (letters, digits, '.', '_', '-'; starts alphanumeric)"
_GLOB_CHARACTERS = frozenset("*?[")
_GLOB_TEXT = re.compile(r"^[A-Za-z0-9._\-*?\[\]!]{1,200}$")
_BRACKET_SET = re.compile(r"\[!?[A-Za-z0-9._-]+\]")


def is_pattern(entry: str) -> bool:
    """Whether a `models`/`exclude` entry is a glob pattern (`*`, `?`, `[...]`), not a slug."""
    return not _GLOB_CHARACTERS.isdisjoint(entry)


def _model_entry(value: str) -> str:
    """A model slug, or a glob pattern over slugs (fnmatch syntax, case-sensitive)."""
    if not is_pattern(value):
        if not re.fullmatch(MODEL_PATTERN, value):
            raise ValueError(SLUG_PROBLEM)
        return value
    if not _GLOB_TEXT.fullmatch(value):
        raise ValueError(
            "not a valid pattern: slug characters and the wildcards *, ? and [...] only "
            "(no '/': the org is given by orgs[].name)"
        )
    outside = _BRACKET_SET.sub("", value)
    if "[" in outside or "]" in outside or "!" in outside:
        raise ValueError(
            "not a valid pattern: every [ must close with ] around at least one slug "
            "character, and ! only negates a [...] set"
        )
    return value


ModelEntry = Annotated[str, AfterValidator(_model_entry)]


def _check_token(value: SecretStr, empty_message: str) -> SecretStr:
    """A token goes into an HTTP header: whitespace or control characters would break it (a CRLF
    env file leaves a trailing \\r), and the resulting error would quote the token."""
    token = value.get_secret_value()
    if not token.strip():
        raise ValueError(empty_message)
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        raise ValueError(
            "contains whitespace or control characters (a CRLF line ending in an env file?)"
        )
    if not token.isascii():  # an HTTP header is Latin-1 at best; tokens are ASCII
        raise ValueError("contains non-ASCII characters (a typographic quote pasted in?)")
    return value


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Lax mode lets `${VAR}` text become a number, but it would also read `true` as 1."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation in (int, float) or float in get_args(annotation):
                raise ValueError("expected a number, got a boolean")
        return value


class RetrySettings(_Settings):
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


class RegistrySettings(_Settings):
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
        return _check_token(value, "is empty")

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


class OrgSettings(_Settings):
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
        return _check_token(value, "is empty (leave the key out to use registry.token)")

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        duplicates = _listed_twice(value)
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return value


def _listed_twice(values: list[str]) -> list[str]:
    """The values listed more than once, sorted; counted in one pass (a `list.count` per item
    took 3 s for an org of 20,000 models, at every start)."""
    return sorted(value for value, seen in Counter(values).items() if seen > 1)


_SECRET_WORDS = ("key", "secret", "token", "password", "credential", "session")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageOptions(_Settings):
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


class ChecksSettings(_Settings):
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


class OutputSettings(_Settings):
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


class Config(_Settings):
    """A validated configuration file."""

    registry: RegistrySettings
    orgs: list[OrgSettings] = Field(min_length=1, description="the orgs to snapshot, each once")
    output: OutputSettings

    @field_validator("orgs")
    @classmethod
    def _unique_orgs(cls, value: list[OrgSettings]) -> list[OrgSettings]:
        duplicates = _listed_twice([org.name for org in value])
        if duplicates:
            raise ValueError(f"org listed more than once: {', '.join(duplicates)}")
        return value

    _warnings: tuple[str, ...] = PrivateAttr(default=())
    _source: str | None = PrivateAttr(default=None)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Non-fatal problems found while loading (e.g. a literal token in the file)."""
        return self._warnings

    @property
    def source(self) -> str | None:
        """The file this config was read from, if any."""
        return self._source

    def targets(self) -> list[tuple[str, str]]:
        """Every (org, model) named exactly, in configuration order; discovered targets come
        from `connector.extraction.plan.plan_targets`."""
        return [(org.name, model) for org in self.orgs for model in org.slugs]

    def discovers(self) -> bool:
        """Whether any org has a pattern, so resolving the targets calls listModels."""
        return any(org.patterns for org in self.orgs)

    def covers(self, org: str, model: str) -> bool:
        """Whether this config targets `org/model` when the registry lists it: named exactly,
        or matched by a pattern and not excluded."""
        for settings in self.orgs:
            if settings.name == org:
                return model in settings.slugs or settings.wants(model)
        return False

    def credential_for(self, org: str) -> Credential:
        """The org's token and scheme: its own where set, else the registry's."""
        registry = self.registry
        token, scheme = registry.token.get_secret_value(), registry.auth_scheme
        setting = "registry.auth_scheme"
        for index, settings in enumerate(self.orgs):
            if settings.name != org:
                continue
            if settings.token is not None:
                token = settings.token.get_secret_value()
            if settings.auth_scheme is not None:
                scheme, setting = settings.auth_scheme, f"orgs[{index}].auth_scheme"
        return Credential(token, scheme, setting)

    def auth_warnings(self) -> list[str]:
        """A warning for each API-key-looking token configured to go as Bearer."""
        registry = self.registry
        found = [
            api_key_warning(
                "registry.token",
                registry.token.get_secret_value(),
                registry.auth_scheme,
                "registry.auth_scheme",
            )
        ]
        for index, org in enumerate(self.orgs):
            if org.token is None and org.auth_scheme is None:
                continue  # registry.token as registry.auth_scheme sends it: checked above
            where = f"orgs[{index}].token" if org.token is not None else "registry.token"
            credential = self.credential_for(org.name)
            found.append(
                api_key_warning(
                    f"{where} (org {org.name})",
                    credential.token,
                    credential.scheme,
                    credential.setting,
                )
            )
        return [warning for warning in found if warning is not None]

    def secrets(self) -> list[str]:
        """Every token in this config, so outputs can be scrubbed of them."""
        tokens = [self.registry.token.get_secret_value()]
        tokens += [o.token.get_secret_value() for o in self.orgs if o.token is not None]
        return [t for t in tokens if t]


def interpolate(
    value: Any,
    env: Mapping[str, str],
    path: tuple[int | str, ...],
    problems: list[str],
    references: dict[str, list[str]] | None = None,
    *,
    placeholders: bool = False,
) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string; `$$` is a literal `$`.

    `references` collects, per variable referenced without a default, the keys that use it
    (what a run needs). An unset one is a problem; with `placeholders` it is left as written
    instead (`${VAR}`), so the rest of the file can still be checked."""
    if isinstance(value, dict):
        return {
            k: interpolate(v, env, (*path, str(k)), problems, references, placeholders=placeholders)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            interpolate(v, env, (*path, i), problems, references, placeholders=placeholders)
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if references is not None and default is None:
            keys = references.setdefault(name, [])
            keys += [] if key_path(path) in keys else [key_path(path)]
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        if placeholders:
            return match.group(0)
        problems.append(f"{key_path(path)}: environment variable {name} is not set")
        return ""

    return _ENV_REFERENCE.sub(substitute, value)


def _literal_token_warnings(raw: Any) -> list[str]:
    warnings: list[str] = []
    if not isinstance(raw, dict):
        return warnings
    places: list[tuple[str, Any]] = []
    if isinstance(raw.get("registry"), dict):
        places.append(("registry.token", raw["registry"].get("token")))
    for index, org in enumerate(raw.get("orgs") or []):
        if isinstance(org, dict) and "token" in org:
            places.append((f"orgs[{index}].token", org.get("token")))
    for where, token in places:
        if isinstance(token, str) and token and "${" not in token:
            warnings.append(
                f"{where} is a literal token in the config file; "
                "put it in an environment variable and write ${VARIABLE_NAME}"
            )
    return warnings


# What pydantic says when a setting that wants text or a word (str, a token, a path, one of a
# Literal's words) got something else.
_WORD_ERRORS = frozenset({"string_type", "literal_error", "path_type"})


def _pydantic_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):  # the input only for its type: never shown
        message = item["msg"].removeprefix("Value error, ")
        scalar = item.get("input")
        if item["type"] in _WORD_ERRORS and isinstance(scalar, bool | int | float):
            message = quote_problem(scalar, (item.get("ctx") or {}).get("expected"))
        elif item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see sample_configs/full.yaml)"
        elif item["type"] == "string_pattern_mismatch":
            message = "not a valid slug (letters, digits, '.', '_', '-'; starts alphanumeric)"
        problems.append(f"{key_path(tuple(item['loc']))}: {message}")
    return problems


def parse_config(
    raw: Any,
    env: Mapping[str, str] | None = None,
    source: str | None = None,
    *,
    placeholders: bool = False,
    found: Sequence[str] = (),
) -> Config:
    """Validate an already-parsed YAML document; raises ConfigError listing every problem
    (`found`: those already seen in the file, such as a key written twice).

    With `placeholders`, an unset `${VAR}` is checked as the text `${VAR}` (which passes as a
    token) instead of being a problem: `validate` checks a file where the secrets are not set.
    A value that cannot pass with it (a URL from a variable, say) is a problem saying so."""
    if not isinstance(raw, dict):
        raise ConfigError([*found, "(top level): expected a mapping of settings"], source)
    environ = os.environ if env is None else env
    problems: list[str] = list(found)
    references: dict[str, list[str]] = {}
    resolved = interpolate(raw, environ, (), problems, references, placeholders=placeholders)
    unset = {
        key: name for name, keys in references.items() if not environ.get(name) for key in keys
    }
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        # An unset variable already explains any complaint about the value at the same key.
        for problem in _pydantic_problems(exc):
            key = problem.split(": ", 1)[0]
            if key not in unset:
                problems.append(problem)
            elif placeholders:
                problems.append(
                    f"{key}: cannot be checked while {unset[key]} is not set (only a token "
                    "can be checked without its value); set it and validate again"
                )
        config = None
    if problems or config is None:
        raise ConfigError(list(dict.fromkeys(problems)), source)
    config._warnings = (*_literal_token_warnings(raw), *config.auth_warnings())
    config._source = source
    return config


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's own message quotes the offending line, which may hold a literal token."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        what = "; ".join(part for part in (error.context, error.problem) if part)
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"not valid YAML: {error}"


def _read_yaml(source: str) -> tuple[Any, list[str]]:
    """The document and the problems found in the file itself (keys written twice)."""
    text = read_config_text(source)
    try:
        return load_yaml(text, source)
    except RecursionError as exc:  # nested thousands deep
        raise ConfigError(["is nested too deeply to be a config"], source) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], source) from exc


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    placeholders: bool = False,
) -> Config:
    """Read and validate a YAML config file (`placeholders`: see `parse_config`)."""
    source = os.fspath(path)
    raw, found = _read_yaml(source)
    return parse_config(raw, env, source, placeholders=placeholders, found=found)


def config_variables(path: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """Every environment variable the file uses without a default, with the keys that use it:
    what a run needs set (`connector validate` lists them)."""
    raw, _ = _read_yaml(os.fspath(path))
    references: dict[str, list[str]] = {}
    interpolate(raw, {}, (), [], references, placeholders=True)
    return {name: tuple(keys) for name, keys in references.items()}


def validate_output(
    section: Any, env: Mapping[str, str] | None = None, source: str | None = None
) -> OutputSettings:
    """Validate an `output` section alone (also used for --output overrides)."""
    problems: list[str] = []
    resolved = interpolate(section, os.environ if env is None else env, ("output",), problems)
    try:
        settings = OutputSettings.model_validate(resolved)
    except ValidationError as exc:
        problems += [f"output.{p}" for p in _pydantic_problems(exc)]
        settings = None
    if problems or settings is None:
        raise ConfigError(problems, source)
    return settings


def load_output_settings(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> OutputSettings:
    """Only the `output` section of a config file: reading the dataset needs no registry
    token, so a report must not fail because the extractor's environment is not set."""
    source = os.fspath(path)
    raw, found = _read_yaml(source)
    section = raw.get("output") if isinstance(raw, dict) else None
    if section is None:
        raise ConfigError([*found, "output: missing (the report needs output.uri)"], source)
    try:
        settings = validate_output(section, env, source)
    except ConfigError as exc:
        raise ConfigError([*found, *exc.problems], source) from exc
    if found:
        raise ConfigError(found, source)
    return settings
