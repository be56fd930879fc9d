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

from connector.dataset.flatten import Row, VersionList, parse_versions
from connector.errors import ErrorType, TargetError
from connector.http.budget import Share
from connector.http.client import FetchResult, RegistryClient


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
    """The rows of one target and the versions dropped from them; `share` is the memory
    budget its version list holds, released by the caller once the rows are in the writer."""

    rows: list[Row] = field(default_factory=list)
    dropped: list[DroppedVersion] = field(default_factory=list)
    share: Share | None = None


def fetch_target(
    client: RegistryClient, org: str, model: str, token: str, version_detail: str
) -> FetchedTarget:
    """List the versions, fetch the details `version_detail` asks for, build the rows.

    Raises the TargetError of whichever call failed; for a detail, its message names the
    operation and the version (a PayloadError's `raw` keeps the offending body). The list's
    memory share is released here on a failure, by the caller after a success."""
    # In a list that _build empties: no name here keeps the parsed body alive meanwhile.
    return _build(
        client, org, model, token, version_detail, [client.list_model_versions(org, model, token)]
    )


def _build(
    client: RegistryClient,
    org: str,
    model: str,
    token: str,
    version_detail: str,
    listed: list[FetchResult],
) -> FetchedTarget:
    """`listed` is emptied once the body is validated: the parsed JSON then goes (its objects
    must not live on next to the rows built from them); the body stays, as the `raw` of a
    later PayloadError."""
    share = listed[0].share
    try:
        result = listed.pop()
        body = result.body
        extracted_at = int(time.time() * 1_000_000)
        versions = parse_versions(
            result.payload, org=org, model=model, extracted_at=extracted_at, body=body
        )
        del result
        fetched = FetchedTarget(share=share)
        _add_details(client, org, model, token, version_detail, versions, fetched)
        fetched.rows = versions.rows()
    except BaseException:
        if share is not None:
            share.release()
        raise
    return fetched


def _add_details(
    client: RegistryClient,
    org: str,
    model: str,
    token: str,
    version_detail: str,
    versions: VersionList,
    fetched: FetchedTarget,
) -> None:
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
