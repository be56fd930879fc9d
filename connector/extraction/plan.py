"""Target planning: the configured exact slugs plus the models discovered through listModels.

`plan_targets` is the one place that turns a config into the run's target list, sorted and
deduplicated, so the extractor, `connector targets` and `--shard K/N` all see the same list.
An org with a pattern is paged through (`limit` 100, oldest first); paging stops at a page
shorter than the limit, an empty page, or a page seen before (a server that ignores `page`
would otherwise be read forever), and a model listed twice (pages that overlap because a model
was created or deleted during paging) counts once. A listing that fails after its retries
fails that org's discovery as a whole: it is returned as a failure, never as a shorter list.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from connector.config import MODEL_PATTERN, Config, OrgSettings
from connector.errors import ErrorType, PayloadError, RunAbortedError, TargetError
from connector.extraction.workers import WorkerPool
from connector.http.client import RegistryClient

PAGE_LIMIT = 100
MAX_PAGES = 100_000  # ten million models: past this a listing is broken, not long
_LIST_KEYS = ("models", "items")


@dataclass(frozen=True)
class Discovery:
    """What listModels gave for one org: the models it listed (sorted) and its page count."""

    org: str
    models: tuple[str, ...]
    pages: int
    warnings: tuple[str, ...] = ()


@dataclass
class TargetPlan:
    """The run's targets, sorted and deduplicated, and what discovery could not do.

    `failures` holds one TargetError per org whose listing failed (its `model` is the org's
    patterns, e.g. `*`); `incompatible` is set when the registry answered 426 to a listing.
    """

    targets: list[tuple[str, str]] = field(default_factory=list)
    failures: list[TargetError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    discovered: dict[str, Discovery] = field(default_factory=dict)
    incompatible: RunAbortedError | None = None

    @property
    def failed_orgs(self) -> list[str]:
        """The orgs whose discovery failed, sorted."""
        return sorted({failure.org or "" for failure in self.failures})


def plan_targets(config: Config, client: RegistryClient) -> TargetPlan:
    """Resolve every org's targets; calls listModels for orgs with a pattern, nothing else.
    A 426 aborts the client (the whole run stops, as for any other call)."""
    plan = TargetPlan()
    targets = set(config.targets())
    discovering = [org for org in config.orgs if org.patterns]
    if discovering:
        threads = min(config.registry.concurrency, len(discovering))
        for org, outcome in WorkerPool(
            lambda org: (org, _discover(client, org, config.token_for(org.name))),
            discovering,
            threads,
            name="discover",
            abandoned=client.abort,
        ):
            if isinstance(outcome, TargetError):
                plan.failures.append(outcome)
                if isinstance(outcome, RunAbortedError) and plan.incompatible is None:
                    plan.incompatible = outcome
                    client.abort()
                continue
            plan.discovered[org.name] = outcome
            plan.warnings += outcome.warnings
            matched = [model for model in outcome.models if org.wants(model)]
            targets.update((org.name, model) for model in matched)
            plan.warnings += _unmatched(org, outcome.models)
    plan.targets = sorted(targets)
    plan.failures.sort(key=lambda failure: failure.org or "")
    return plan


def _discover(client: RegistryClient, org: OrgSettings, token: str) -> Discovery | TargetError:
    """One org's listing, or the error that failed it (named as the org's discovery)."""
    try:
        return list_models(client, org.name, token)
    except TargetError as exc:  # a new error naming the org's discovery; the raised one stays
        return exc.evolve(
            org=org.name,
            model=",".join(org.patterns),
            detail=f"listModels (discovery): {exc.detail}",
        )


def list_models(client: RegistryClient, org: str, token: str | None = None) -> Discovery:
    """Every model the org lists, each once, sorted; raises the TargetError of a failed page."""
    models: dict[str, None] = {}
    warnings: list[str] = []
    seen: set[tuple[str, ...]] = set()
    pages = 0
    for page in _pages():
        result = client.list_models(org, page, PAGE_LIMIT, token)
        pages += 1
        try:
            entries = _page_entries(result.payload, org, page, warnings)
        except PayloadError as exc:
            raise exc.evolve(raw=result.body) from exc
        names = tuple(entries)
        if not names or names in seen:
            break
        seen.add(names)
        models.update(dict.fromkeys(name for name in names if name))
        if len(entries) < PAGE_LIMIT:
            break
    return Discovery(org, tuple(sorted(models)), pages, tuple(warnings))


def _pages() -> Iterator[int]:
    yield from range(1, MAX_PAGES + 1)
    raise PayloadError(
        f"listModels gave a full page {MAX_PAGES} times over without repeating; giving up",
        error_type=ErrorType.LISTING_UNBOUNDED,
    )


def _page_entries(payload: Any, org: str, page: int, warnings: list[str]) -> list[str]:
    """The model slugs of one page ("" for an entry that is not a usable slug, so the page
    keeps its length for the short-page rule); accepts `models` or `items` as the list key."""
    where = f"listModels page {page}"
    if not isinstance(payload, dict):
        raise PayloadError(f"{where}: body is a JSON {type(payload).__name__}, expected an object")
    key = next((k for k in _LIST_KEYS if isinstance(payload.get(k), list)), None)
    if key is None:
        raise PayloadError(f"{where}: no `models` (or `items`) list in the body")
    slugs = []
    for index, entry in enumerate(payload[key]):
        name = entry.get("name") if isinstance(entry, dict) else entry
        slug = name.removeprefix(f"{org}/") if isinstance(name, str) else None
        if slug is None or not re.fullmatch(MODEL_PATTERN, slug):
            warnings.append(
                f"org {org}: {where} {key}[{index}] has no usable model name "
                f"({str(name)[:80]!r}); skipped"
            )
            slug = ""
        slugs.append(slug)
    return slugs


def _unmatched(org: OrgSettings, listed: tuple[str, ...]) -> list[str]:
    """A warning per pattern that matched none of the listed models (often a typo)."""
    return [
        f"org {org.name}: pattern {pattern!r} matches none of the {len(listed)} listed model(s)"
        for pattern in org.patterns
        if not any(fnmatchcase(model, pattern) for model in listed)
    ]
