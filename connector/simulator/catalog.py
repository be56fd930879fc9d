"""The simulated registry's catalog: models and versions derived from a seed and a day.

Separate from the server so the ground truth (what a correct connector must store) is plain
data with no sockets involved. Nothing here reads the wall clock: a version's downloads are a
function of the simulated day, and versions scheduled for later days appear only from then on.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import parse_qs

VERSIONS_SHAPES = ("strings", "objects", "mixed")
FRAMEWORKS = ("safetensors", "pytorch", "onnx", "gguf")
_FUTURE_DAYS = (2, 3, 4, 5, 7, 9, 12, 15, 20, 30)
_LICENSES = ("apache-2.0", "mit", "cc-by-4.0", "proprietary")
_TASKS = ("text-classification", "text-generation", "object-detection", "embeddings")
_TAGS = ("nlp", "vision", "quantized", "distilled", "multilingual", "experimental")

DETAIL_FIELDS = ("file_size_bytes", "license", "task", "tags")

Catalog = dict[tuple[str, str], tuple["Version", ...]]


class CatalogSpec(Protocol):
    """The part of the simulator's config that decides the catalog."""

    @property
    def seed(self) -> int: ...

    @property
    def orgs(self) -> int: ...

    @property
    def models_per_org(self) -> int: ...

    @property
    def versions_per_model(self) -> int: ...

    @property
    def empty_models(self) -> int: ...

    @property
    def start_date(self) -> date: ...


@dataclass(frozen=True)
class Version:
    """One model version; `release_day` <= 0 means it exists before the simulation starts."""

    version: str
    release_day: int
    artifact_id: str
    created_at: datetime
    base_downloads: int
    downloads_per_day: int
    framework: str
    is_public: bool
    origin: Mapping[str, str]

    def downloads(self, day: int) -> int | None:
        """Total downloads on `day`; None before the release day."""
        if day < self.release_day:
            return None
        return self.base_downloads + self.downloads_per_day * (day - max(self.release_day, 0))


def _semvers(rng: random.Random, count: int) -> list[str]:
    major, minor, patch = rng.choice((0, 1, 2)), rng.randint(0, 3), 0
    names = []
    for _ in range(count):
        names.append(f"{major}.{minor}.{patch}")
        roll = rng.random()
        if roll < 0.6:
            patch += 1
        elif roll < 0.9:
            minor, patch = minor + 1, 0
        else:
            major, minor, patch = major + 1, 0, 0
    return names


def _make_version(
    spec: CatalogSpec, rng: random.Random, key: str, name: str, day: int, still: bool
) -> Version:
    digest = hashlib.sha256(f"{spec.seed}:{key}:{name}".encode()).digest()
    six_am = datetime.combine(spec.start_date + timedelta(days=day - 1), time(6), UTC)
    if day > 0:  # a release during the simulation starts small and grows
        base, per_day = rng.randint(0, 9), rng.randint(5, 300)
    else:
        base = rng.randint(0, 20000)
        per_day = 0 if still or rng.random() < 0.1 else rng.randint(1, 400)
    return Version(
        version=name,
        release_day=day,
        artifact_id=str(uuid.UUID(bytes=digest[:16], version=4)),
        # Release days are distinct and the offset stays under a day: strictly increasing.
        created_at=six_am + timedelta(seconds=rng.randint(0, 12 * 3600 - 1)),
        base_downloads=base,
        downloads_per_day=per_day,
        framework=rng.choice(FRAMEWORKS),
        is_public=rng.random() < 0.3,
        origin=MappingProxyType(
            {
                "source": rng.choice(("upload", "import", "ci")),
                "uploaded_by": rng.choice(("ci", "release-bot", "alice", "bob")),
            }
        ),
    )


def _build_versions(
    spec: CatalogSpec, org: str, model: str, *, first: bool, single: bool
) -> tuple[Version, ...]:
    """Versions of one model in release order; `first` guarantees releases on days 2 and 5 and
    a version whose downloads never grow, `single` a model with exactly one version ever."""
    key = f"{org}/{model}"
    rng = random.Random(f"{spec.seed}:{key}")
    count = 1 if single else rng.randint(1, 2 * spec.versions_per_model - 1)
    future: list[int] = []
    if first:
        future = [2, 5]
    elif not single and rng.random() < 0.3:
        future = sorted(rng.sample(_FUTURE_DAYS, rng.randint(1, 2)))
    past, day = [], -rng.randint(0, 20)
    for _ in range(count):
        past.append(day)
        day -= rng.randint(3, 60)
    days = past[::-1] + future
    names = _semvers(rng, len(days))
    return tuple(
        _make_version(spec, rng, key, name, release, first and index == 0)
        for index, (name, release) in enumerate(zip(names, days, strict=True))
    )


def build_catalog(spec: CatalogSpec) -> Catalog:
    """Every (org, model) in order, with its versions (empty for the configured empty models)."""
    orgs = [f"org-{i:02d}" for i in range(spec.orgs)]
    models = [f"model-{j:04d}" for j in range(spec.models_per_org)]
    targets = [(org, model) for org in orgs for model in models]
    # Empty models are the last ones of org-00 (then of org-01, ... if there are more).
    empty = set([(org, model) for org in orgs for model in reversed(models)][: spec.empty_models])
    filled = [target for target in targets if target not in empty]
    single = filled[-1] if len(filled) >= 2 else None
    return {
        target: ()
        if target in empty
        else _build_versions(spec, *target, first=target == filled[0], single=target == single)
        for target in targets
    }


def live(versions: tuple[Version, ...], day: int) -> list[Version]:
    """The versions released by `day`, newest first (the order the API lists them)."""
    return [v for v in reversed(versions) if v.release_day <= day]


def summary(key: str, version: Version, day: int) -> dict[str, Any]:
    """The ModelArtifactSummary of a version as the API serialises it."""
    return {
        "id": version.artifact_id,
        "name": key,
        "version": version.version,
        "created_at": version.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "download_count": version.downloads(day),
        "framework": version.framework,
        "is_public": version.is_public,
        "origin": dict(version.origin),
    }


def detail(key: str, version: Version, day: int) -> dict[str, Any]:
    """getModelVersion's body: the summary plus fields only the detail endpoint has."""
    rng = random.Random(version.artifact_id)
    return {
        **summary(key, version, day),
        "file_size_bytes": rng.randint(10**6, 10**10),
        "license": rng.choice(_LICENSES),
        "task": rng.choice(_TASKS),
        "tags": sorted(rng.sample(_TAGS, rng.randint(0, 3))),
    }


def _carries_summary(shape: str, index: int) -> bool:
    """Whether entry `index` of `versions` is an object (not a bare string) in `shape`."""
    return shape == "objects" or (shape == "mixed" and index % 2 == 1)


def versions_payload(
    key: str, versions: tuple[Version, ...], day: int, shape: str
) -> dict[str, Any]:
    """listModelVersions' body; "mixed" alternates string and object, starting with a string."""
    summaries = [summary(key, version, day) for version in live(versions, day)]
    entries: list[Any] = [
        entry if _carries_summary(shape, index) else entry["version"]
        for index, entry in enumerate(summaries)
    ]
    return {"name": key, "latest": summaries[0] if summaries else None, "versions": entries}


def expected_rows(
    catalog: Catalog, day: int, shape: str, version_detail: str = "missing"
) -> list[dict[str, Any]]:
    """One row per (org, model, version) as a correct connector stores it.

    With `version_detail` off, fields a string entry cannot carry are None unless the row is
    the `latest` one, which always has them; `missing` fetches the detail of exactly the rows
    that lack them, `all` of every row. Rows with a detail also carry its extra fields.
    """
    rows = []
    for (org, model), versions in catalog.items():
        key = f"{org}/{model}"
        for index, version in enumerate(live(versions, day)):
            listed = index == 0 or _carries_summary(shape, index)
            fetched = version_detail == "all" or (version_detail == "missing" and not listed)
            known = listed or fetched
            extra = detail(key, version, day) if fetched else {}
            rows.append(
                {
                    "org": org,
                    "model": model,
                    "model_name": key,
                    "version": version.version,
                    "version_rank": index + 1,
                    "is_latest": index == 0,
                    "artifact_id": version.artifact_id if known else None,
                    "created_at": version.created_at if known else None,
                    "download_count": version.downloads(day) if known else None,
                    "framework": version.framework if known else None,
                    "is_public": version.is_public if known else None,
                    "origin": dict(version.origin) if known else None,
                    **{name: extra.get(name) for name in DETAIL_FIELDS},
                }
            )
    return rows


LISTING_QUIRKS = ("", "shift", "repeat", "shuffle")


def models_page(
    catalog: Catalog, org: str, day: int, query: str, key: str = "models", quirk: str = ""
) -> dict[str, Any] | list[Any]:
    """listModels' body for one page, or the 422 `errors` list if the query is invalid.

    Models without versions are left out: there is no summary to give for them. The order is
    the catalog's, whatever `sort_by` says, so pages stay stable while the day moves. `key`
    names the list (`models`, or `items` as some deployments answer). `quirk` misbehaves the
    way real listings do: `shift` starts each page after the first one model early (a model
    created at the top during paging), `repeat` ignores `page`, `shuffle` reorders the
    models differently for every page.
    """
    params = parse_qs(query)
    values, errors = {"page": 1, "limit": 50}, []
    for name, high in (("page", None), ("limit", 100)):
        raw = params.get(name, [str(values[name])])[-1]
        if not raw.isdigit() or int(raw) < 1 or (high is not None and int(raw) > high):
            bounds = f"between 1 and {high}" if high else "at least 1"
            msg = f"{name} must be an integer {bounds}"
            errors.append({"loc": ["query", name], "msg": msg, "type": "value_error"})
        else:
            values[name] = int(raw)
    if errors:
        return errors
    page, limit = values["page"], values["limit"]
    summaries = [
        summary(f"{org}/{model}", versions[0], day)
        for (owner, model), every in catalog.items()
        if owner == org and (versions := live(every, day))
    ]
    start = (page - 1) * limit
    if quirk == "shift" and page > 1:
        start -= 1
    elif quirk == "repeat":
        start = 0
    elif quirk == "shuffle":
        random.Random(f"{org}:{page}").shuffle(summaries)
    return {key: summaries[start : start + limit], "total": len(summaries), **values}
