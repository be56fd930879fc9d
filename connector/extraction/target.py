"""Fetch one target: its version list, then the `getModelVersion` details its rows lack.

Details are fetched in the same worker, one after another, so they share the run's worker
pool (its concurrency), and the client's rate limiter, retries, deadline, token and org block
with every other request. A model is published whole or not at all: a detail that still fails
after its retries fails the model (naming the version), except a 404, which means the version
was deleted between the list and the detail call: its row is dropped and recorded.

Details are bounded per model (`registry.max_version_details`), newest versions first: past the
cap the oldest versions keep their rows with null counts (as with `version_detail: off`) and
the model is named in a warning. Failing the model instead would lose the counts already known
for its newest versions, and with them a whole model from the day's snapshot, for want of
counts of its oldest versions, which change least.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from connector.credentials import Credential
from connector.dataset.flatten import Row, VersionList, parse_versions
from connector.errors import ErrorType, PayloadError, TargetError
from connector.http.budget import Share
from connector.http.client import FetchResult, RegistryClient
from connector.loggers import get_logger

log = get_logger(__name__)


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
    """The rows of one target, the versions dropped from them and what to warn about;
    `share` is the memory budget its version list holds, released by the caller once the rows
    are in the writer."""

    rows: list[Row] = field(default_factory=list)
    dropped: list[DroppedVersion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    share: Share | None = None


def fetch_target(
    client: RegistryClient, org: str, model: str, credential: Credential, version_detail: str
) -> FetchedTarget:
    """List the versions, fetch the details `version_detail` asks for (at most
    `registry.max_version_details`, newest first), build the rows.

    Raises the TargetError of whichever call failed; for a detail, its message names the
    operation and the version (a PayloadError's `raw` and `request` keep the offending body
    and the call it answered). The list's memory share is released here on a failure, by the
    caller after a success."""
    # In a list that _build empties: no name here keeps the parsed body alive meanwhile.
    listed = [client.list_model_versions(org, model, credential)]
    return _build(client, org, model, credential, version_detail, listed)


def _build(
    client: RegistryClient,
    org: str,
    model: str,
    credential: Credential,
    version_detail: str,
    listed: list[FetchResult],
) -> FetchedTarget:
    """`listed` is emptied once the body is validated: the parsed JSON then goes (its objects
    must not live on next to the rows built from them); the body stays, as the `raw` of a
    later PayloadError."""
    share = listed[0].share
    try:
        result = listed.pop()
        body, request = result.body, result.request
        extracted_at = int(time.time() * 1_000_000)
        try:
            versions = parse_versions(
                result.payload, org=org, model=model, extracted_at=extracted_at, body=body
            )
        except PayloadError as exc:
            raise exc.evolve(request=request) from exc
        del result
        fetched = FetchedTarget(share=share)
        _add_details(client, org, model, credential, version_detail, versions, fetched)
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
    credential: Credential,
    version_detail: str,
    versions: VersionList,
    fetched: FetchedTarget,
) -> None:
    wanted = versions.needing_detail(version_detail)
    cap = client.settings.max_version_details
    if len(wanted) > cap:
        warning = (
            f"{org}/{model}: {len(wanted)} versions need getModelVersion, more than "
            f"registry.max_version_details={cap}: the newest {cap} were fetched, the "
            f"{len(wanted) - cap} oldest keep null counts"
        )
        log.warning("%s", warning, extra={"event": "version_details_capped", "org": org})
        fetched.warnings.append(warning)
    for version in wanted[:cap]:
        try:
            detail = client.get_model_version(org, model, version, credential)
        except TargetError as exc:
            if exc.error_type is ErrorType.NOT_FOUND:  # deleted since it was listed
                versions.drop(version)
                fetched.dropped.append(DroppedVersion(org, model, version, exc.detail))
                continue
            # A new error naming the call; the raised one stays as it was.
            raise exc.evolve(detail=f"getModelVersion {version!r}: {exc.detail}") from exc
        try:
            versions.add_detail(version, detail.payload, detail.body)
        except PayloadError as exc:
            raise exc.evolve(request=detail.request) from exc
