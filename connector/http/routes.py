"""The registry's URLs: one function per operation, each built on the API root.

Every org, model and version goes into the path as exactly one percent-encoded segment. Org and
model are slugs (checked against the contract's patterns). A version comes from the server's
own list and may be any string: one that a URL library normalises away (`.`, `..`) or that
cannot be one segment (empty, or holding a `/` that a server may decode back into a separator)
would send the request, and the credential with it, to another endpoint (`.../models/m/..` is
the org's listing), so it is refused, naming it, instead of sent.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode, urlsplit

from connector.config import MODEL_PATTERN, ORG_PATTERN
from connector.errors import ErrorType, TargetFailedError

_DOT_SEGMENTS = frozenset({"", ".", ".."})


def _segment(value: str) -> str:
    return quote(value, safe="")


def _invalid(detail: str, org: str, model: str | None) -> TargetFailedError:
    return TargetFailedError(
        detail, org=org, model=model, attempts=0, error_type=ErrorType.INVALID_SLUG
    )


def models_path(api_root: str, org: str) -> str:
    """`{root}/org/{org}/models`, the org's slug checked first."""
    if not re.fullmatch(ORG_PATTERN, org):
        raise _invalid(f"invalid org slug {org!r}", org, None)
    return f"{api_root}/org/{_segment(org)}/models"


def model_path(api_root: str, org: str, model: str) -> str:
    """`{root}/org/{org}/models/{model}`, both slugs checked first."""
    path = models_path(api_root, org)
    if not re.fullmatch(MODEL_PATTERN, model):
        raise _invalid(f"invalid model slug {model!r}", org, model)
    return f"{path}/{_segment(model)}"


def versions_url(api_root: str, org: str, model: str) -> str:
    """listModelVersions."""
    return f"{model_path(api_root, org, model)}/versions"


def models_url(api_root: str, org: str, page: int, limit: int, include_public: bool) -> str:
    """listModels, one page, oldest first: a model created while the pages are read lands on a
    later page instead of shifting every page by one. `include_public` is always sent, since
    what a server does when it is left out is its own choice."""
    query = urlencode(
        {
            "page": page,
            "limit": limit,
            "sort_by": "created_at",
            "sort_dir": "asc",
            "include_public": "true" if include_public else "false",
        }
    )
    return f"{models_path(api_root, org)}?{query}"


def version_url(api_root: str, org: str, model: str, version: str) -> str:
    """getModelVersion; a version that cannot be exactly one path segment is refused."""
    path = model_path(api_root, org, model)
    if version in _DOT_SEGMENTS or "/" in version:
        raise _invalid(
            f"version {version[:80]!r} cannot be sent as one URL path segment (empty, '.', "
            "'..' or containing '/' would name another endpoint): getModelVersion not requested",
            org,
            model,
        )
    return f"{path}/{_segment(version)}"


def request_line(url: str) -> str:
    """`GET /path?query` of a URL: what a kept body answered (no host, never a credential)."""
    parts = urlsplit(url)
    return f"GET {parts.path}" + (f"?{parts.query}" if parts.query else "")
