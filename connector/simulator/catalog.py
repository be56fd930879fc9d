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
_ARCHITECTURES = ("BertForSequenceClassification", "LlamaForCausalLM", "ViTModel", None)
_SIZES = ("<1B", "1-7B", "7-70B", ">70B", None)
_LANGUAGES = (["en"], ["en", "de", "fr"], None)
_CATEGORIES = {
    "text-classification": "nlp",
    "text-generation": "nlp",
    "object-detection": "vision",
    "embeddings": "retrieval",
}

# The optional manifest fields of every summary (ModelArtifactSummary), as the contract names
# them; a null is a field the model did not declare.
RICH_FIELDS = (
    "pretty_name",
    "summary",
    "task",
    "architecture",
    "base_model",
    "license",
    "size_category",
    "language",
    "tags",
    "task_categories",
    "aliases",
    "version_count",
    "updated_at",
)
DETAIL_FIELDS = ("file_size_bytes",)  # only getModelVersion carries them

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


def summary(key: str, version: Version, day: int, version_count: int) -> dict[str, Any]:
    """The ModelArtifactSummary of a version as the API serialises it; `version_count` is the
    number of the model's versions released by `day`."""
    return {
        "id": version.artifact_id,
        "name": key,
        "version": version.version,
        "created_at": _timestamp(version.created_at),
        "download_count": version.downloads(day),
        "framework": version.framework,
        "is_public": version.is_public,
        "origin": dict(version.origin),
        **_manifest(key, version),
        "version_count": version_count,
    }


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _manifest(key: str, version: Version) -> dict[str, Any]:
    """The optional fields a model's manifest declares for a version; some left null."""
    rng = random.Random(f"manifest:{version.artifact_id}")
    task = rng.choice(_TASKS)
    updated = version.created_at + timedelta(hours=rng.randint(1, 72))
    return {
        "pretty_name": f"{key.partition('/')[2].title()} {version.version}",
        "summary": rng.choice((f"A {task} model.", None)),
        "task": task,
        "architecture": rng.choice(_ARCHITECTURES),
        "base_model": rng.choice((None, f"{key.partition('/')[0]}/base@1.0.0")),
        "license": rng.choice(_LICENSES),
        "size_category": rng.choice(_SIZES),
        "language": rng.choice(_LANGUAGES),
        "tags": sorted(rng.sample(_TAGS, rng.randint(0, 3))),
        "task_categories": [_CATEGORIES[task]],
        "aliases": rng.choice((["stable"], [], None)),
        "updated_at": rng.choice((_timestamp(updated), None)),
    }


def detail(key: str, version: Version, day: int, version_count: int) -> dict[str, Any]:
    """getModelVersion's body: the summary plus fields only the detail endpoint has."""
    rng = random.Random(version.artifact_id)
    return {
        **summary(key, version, day, version_count),
        "file_size_bytes": rng.randint(10**6, 10**10),
    }


def _carries_summary(shape: str, index: int) -> bool:
    """Whether entry `index` of `versions` is an object (not a bare string) in `shape`."""
    return shape == "objects" or (shape == "mixed" and index % 2 == 1)


def versions_payload(
    key: str, versions: tuple[Version, ...], day: int, shape: str, list_name: str = "canonical"
) -> dict[str, Any]:
    """listModelVersions' body; "mixed" alternates string and object, starting with a string.
    The list's own `name` is `org/model` (`canonical`, as the contract's example) or the slug."""
    released = live(versions, day)
    summaries = [summary(key, version, day, len(released)) for version in released]
    entries: list[Any] = [
        entry if _carries_summary(shape, index) else entry["version"]
        for index, entry in enumerate(summaries)
    ]
    name = key if list_name == "canonical" else key.partition("/")[2]
    return {"name": name, "latest": summaries[0] if summaries else None, "versions": entries}


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
        released = live(versions, day)
        for index, version in enumerate(released):
            listed = index == 0 or _carries_summary(shape, index)
            fetched = version_detail == "all" or (version_detail == "missing" and not listed)
            known = listed or fetched
            full = detail(key, version, day, len(released))
            rich = {name: full[name] if known else None for name in RICH_FIELDS}
            if rich["updated_at"] is not None:
                rich["updated_at"] = datetime.fromisoformat(rich["updated_at"])
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
                    **rich,
                    **{name: full[name] if fetched else None for name in DETAIL_FIELDS},
                }
            )
    return rows


LISTING_QUIRKS = ("", "shift", "repeat", "shuffle")
_CHOICES = {
    "sort_by": ("created_at", "name", "updated_at", "download_count"),
    "sort_dir": ("asc", "desc"),
    "include_public": ("true", "false"),
}


@dataclass(frozen=True)
class ListingStyle:
    """How listModels answers: `key` names the list (`models`, or `items` as some deployments
    answer); `cap` is the most items a page holds whatever `limit` asked (the registry may cap
    it); `hidden` models at the end are counted in `total` but never listed; `quirk` misbehaves
    the way real listings do: `shift` starts each page after the first one model early (a model
    created at the top during paging), `repeat` ignores `page`, `shuffle` reorders the models
    differently for every page."""

    key: str = "models"
    cap: int | None = None
    hidden: int = 0
    quirk: str = ""


def models_page(
    catalog: Catalog, org: str, day: int, query: str, style: ListingStyle = ListingStyle()
) -> dict[str, Any] | list[Any]:
    """listModels' body for one page, or the 422 `errors` list if the query is invalid.

    Models without versions are left out: there is no summary to give for them. The order is
    the catalog's, whatever `sort_by` says, so pages stay stable while the day moves. With
    `include_public=true`, the public models of other orgs follow the org's own.
    """
    params = parse_qs(query)
    values, errors = _page_query(params)
    if errors:
        return errors
    page, limit = values["page"], min(values["limit"], style.cap or values["limit"])
    public = params.get("include_public", ["false"])[-1] == "true"
    summaries = [
        summary(f"{owner}/{model}", released[0], day, len(released))
        for (owner, model), every in catalog.items()
        if (released := live(every, day)) and (owner == org or (public and released[0].is_public))
    ]
    summaries.sort(key=lambda entry: not entry["name"].startswith(f"{org}/"))  # own first
    total = len(summaries)
    summaries = summaries[: max(0, total - style.hidden)]
    pages = -(-len(summaries) // limit)
    start = (page - 1) * limit
    if style.quirk == "shift" and page > 1:
        start -= 1
    elif style.quirk == "repeat":
        start = 0
    elif style.quirk == "shuffle":
        random.Random(f"{org}:{page}").shuffle(summaries)
    return {
        style.key: summaries[start : start + limit],
        "total": total,
        "page": page,
        "limit": limit,
        "total_pages": pages,
        "has_next": page < pages,
        "has_prev": page > 1,
    }


def _page_query(params: dict[str, list[str]]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """`page` and `limit` (at most 100) as numbers, and the 422 errors of the query."""
    values, errors = {"page": 1, "limit": 50}, []
    for name, high in (("page", None), ("limit", 100)):
        raw = params.get(name, [str(values[name])])[-1]
        if not raw.isdigit() or int(raw) < 1 or (high is not None and int(raw) > high):
            bounds = f"between 1 and {high}" if high else "at least 1"
            msg = f"{name} must be an integer {bounds}"
            errors.append({"loc": ["query", name], "msg": msg, "type": "value_error"})
        else:
            values[name] = int(raw)
    for name, choices in _CHOICES.items():
        given = params.get(name, [choices[0]])[-1]
        if given not in choices:
            msg = f"{name} must be one of {', '.join(choices)}"
            errors.append({"loc": ["query", name], "msg": msg, "type": "value_error"})
    return values, errors
