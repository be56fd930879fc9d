"""Fetch one target: its version list, then the `getModelVersion` details its rows lack.

Details are fetched in the same worker, one after another, so they share the run's worker
pool (its concurrency), and the client's rate limiter, retries, deadline, token and org block
with every other request. A model is published whole or not at all: a detail that still fails
after its retries fails the model (naming the version), except a 404, which means the version
was deleted between the list and the detail call: its row is dropped and recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from connector.dataset.flatten import Row, parse_versions
from connector.errors import ErrorType, TargetError
from connector.http.client import RegistryClient


@dataclass(frozen=True)
class DroppedVersion:
    """A listed version whose detail answered 404: no row, recorded in the manifest."""

    org: str
    model: str
    version: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """The manifest/summary record."""
        return {
            "org": self.org,
            "model": self.model,
            "version": self.version,
            "detail": self.detail,
        }


@dataclass
class FetchedTarget:
    """The rows of one target and the versions dropped from them."""

    rows: list[Row] = field(default_factory=list)
    dropped: list[DroppedVersion] = field(default_factory=list)


def fetch_target(
    client: RegistryClient, org: str, model: str, token: str, version_detail: str
) -> FetchedTarget:
    """List the versions, fetch the details `version_detail` asks for, build the rows.

    Raises the TargetError of whichever call failed; for a detail, its message names the
    operation and the version (a PayloadError's `raw` keeps the offending body)."""
    result = client.list_model_versions(org, model, token)
    extracted_at = int(time.time() * 1_000_000)
    versions = parse_versions(
        result.payload, org=org, model=model, extracted_at=extracted_at, body=result.body
    )
    fetched = FetchedTarget()
    for version in versions.needing_detail(version_detail):
        try:
            detail = client.get_model_version(org, model, version, token)
        except TargetError as exc:
            if exc.error_type is ErrorType.NOT_FOUND:  # deleted since it was listed
                versions.drop(version)
                fetched.dropped.append(DroppedVersion(org, model, version, exc.detail))
                continue
            # A new error naming the call; the raised one stays as it was.
            raise exc.evolve(detail=f"getModelVersion {version!r}: {exc.detail}") from exc
        versions.add_detail(version, detail.payload, detail.body)
    fetched.rows = versions.rows()
    return fetched
