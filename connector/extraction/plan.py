"""Target planning: the configured exact slugs plus the models discovered through listModels.

`plan_targets` is the one place that turns a config into the run's target list, sorted and
deduplicated, so the extractor, `connector targets` and `--shard K/N` all see the same list.
An org with a pattern is listed by `listing.list_models`; a listing that fails (after its
retries, or because it ended short of the total the registry gave) fails that org's discovery
as a whole: it is returned as a failure, never as a shorter list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from connector.config import Config, OrgSettings
from connector.credentials import Credential
from connector.errors import RunAbortedError, TargetError
from connector.extraction.listing import Discovery, list_models
from connector.extraction.workers import WorkerPool
from connector.http.client import RegistryClient

__all__ = ["TargetPlan", "plan_targets"]


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
            lambda org: (org, _discover(client, org, config.credential_for(org.name))),
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


def _discover(
    client: RegistryClient, org: OrgSettings, credential: Credential
) -> Discovery | TargetError:
    """One org's listing, or the error that failed it (named as the org's discovery)."""
    try:
        return list_models(client, org.name, credential, include_public=org.include_public)
    except TargetError as exc:  # a new error naming the org's discovery; the raised one stays
        return exc.evolve(
            org=org.name,
            model=",".join(org.patterns),
            detail=f"listModels (discovery): {exc.detail}",
        )


def _unmatched(org: OrgSettings, listed: tuple[str, ...]) -> list[str]:
    """A warning per pattern that matched none of the listed models (often a typo)."""
    return [
        f"org {org.name}: pattern {pattern!r} matches none of the {len(listed)} listed model(s)"
        for pattern in org.patterns
        if not any(fnmatchcase(model, pattern) for model in listed)
    ]
