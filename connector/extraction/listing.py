"""Discovery: an org's models through `listModels`, paged by what the server says.

The server may cap `limit` below what was asked (the registry's own client asks for 50), so the
length of a page never ends the listing while the server says another page exists. The rules,
in order, for each page:

- a page that is empty, or lists no model not already seen, ends the listing (a server that
  ignores `page` is read once, not forever);
- otherwise `has_next` says whether another page follows; without it, `total_pages`; without
  that, `total` (more while fewer distinct models were seen); only when the server sends none
  of them, a page shorter than `limit` (the one it echoes, else the one asked for) is the last;
- another page past the budget (`total_pages`, or `total` over the page length, with one page
  of slack for models created meanwhile; a hard cap when neither is sent) fails the listing.

A listing that ends with fewer distinct models than the last page's `total` failed: its models
are not all known, so it is a failure (`listing_incomplete`) and never a shorter list. `total`
is read as the number of models matching when that page was served: if it fell while paging
(models deleted or hidden meanwhile), the last one is the count that must be reached, and the
message says how many stopped being listed. Requests are sorted by creation, oldest first, so
a model created while paging lands on a later page rather than shifting the others.

Every name problem is told once per org, as a count and the first few examples, however many
entries a hostile page holds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from connector.config import MODEL_PATTERN, ORG_PATTERN
from connector.credentials import Credential
from connector.errors import ErrorType, PayloadError
from connector.http.client import FetchResult, RegistryClient

PAGE_LIMIT = 100
MAX_PAGES = 10_000  # a million models at 100 a page: past this a listing is broken, not long
PAGE_SLACK = 1
MAX_EXAMPLES = 5
_LIST_KEYS = ("models", "items")


@dataclass(frozen=True)
class Discovery:
    """What listModels gave for one org: its own usable model slugs (sorted), the pages read,
    the warnings, and how many distinct entries it listed against the `total` it gave."""

    org: str
    models: tuple[str, ...]
    pages: int
    warnings: tuple[str, ...] = ()
    listed: int = 0
    total: int | None = None


@dataclass
class _Examples:
    """A count and the first few examples: what a warning about server data may hold."""

    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.first) < MAX_EXAMPLES:
            self.first.append(example)

    def text(self) -> str:
        more = f" and {self.count - len(self.first)} more" if self.count > len(self.first) else ""
        return ", ".join(self.first) + more


@dataclass(frozen=True)
class _Paging:
    """The paging fields of one page (None: not sent)."""

    has_next: bool | None
    total_pages: int | None
    total: int | None
    limit: int | None


def list_models(
    client: RegistryClient,
    org: str,
    credential: Credential | None = None,
    *,
    include_public: bool = False,
) -> Discovery:
    """Every model the org lists, each once; raises the TargetError of a failed page, or a
    PayloadError (the page's body and request kept) when the listing is unusable or short."""
    listing = _Listing(org)
    result: FetchResult | None = None
    try:
        while True:
            page = listing.pages + 1
            result = client.list_models(
                org, page, PAGE_LIMIT, credential, include_public=include_public
            )
            if not listing.read(result.payload, page):
                return listing.finish()
    except PayloadError as exc:
        if result is None or exc.raw is not None:
            raise
        raise exc.evolve(raw=result.body, request=result.request) from exc


class _Listing:
    """The state of one org's paging."""

    def __init__(self, org: str) -> None:
        self.org = org
        self.pages = 0
        self._seen: dict[str, None] = {}  # every distinct name listed
        self._nameless = 0
        self._own: set[str] = set()
        self._unusable = _Examples()
        self._foreign = _Examples()
        self._total: int | None = None  # the last page's
        self._most_total = 0
        self._most_pages = 0
        self._page_length = 0

    def read(self, payload: Any, page: int) -> bool:
        """Take one page; whether another one must be read."""
        where = f"listModels page {page}"
        entries, paging = _page(payload, where)
        self.pages += 1
        before = len(self._seen)
        for index, entry in enumerate(entries):
            self._take(entry, f"page {page} [{index}]")
        self._count(paging, len(entries))
        if len(self._seen) == before:  # empty, or nothing it names was new
            return False
        if paging.has_next is not None:
            more = paging.has_next
        elif paging.total_pages is not None:
            more = page < paging.total_pages
        elif paging.total is not None:
            more = self.listed < paging.total
        else:
            more = len(entries) >= (paging.limit or PAGE_LIMIT)
        budget = self._budget()
        if more and page >= budget:
            raise PayloadError(
                f"{where}: the registry says another page follows, past the {budget} page(s) "
                "its total_pages/total allow (or the hard cap): the listing does not end",
                error_type=ErrorType.LISTING_UNBOUNDED,
            )
        return more

    @property
    def listed(self) -> int:
        """Distinct entries listed so far, for `total`: named ones once each, and every one
        without a name (they cannot be told apart, and name no model to look for)."""
        return len(self._seen) + self._nameless

    def _take(self, entry: Any, where: str) -> None:
        """Count one entry, a name once: an own model, another org's, or an unusable one."""
        name = entry.get("name") if isinstance(entry, dict) else entry
        if not isinstance(name, str):
            self._nameless += 1
            kind = "no name" if name is None else f"a {type(name).__name__} as name"
            self._unusable.add(f"{where} ({kind})")  # never its repr: it may nest deeply
            return
        if name in self._seen:
            return
        owner, slash, slug = name.partition("/")
        if not slash:
            owner, slug = self.org, name
        usable = re.fullmatch(MODEL_PATTERN, slug) is not None
        if owner == self.org and usable:
            if slug not in self._own:  # `slug` and `org/slug` are one model
                self._own.add(slug)
                self._seen[name] = None
        elif usable and re.fullmatch(ORG_PATTERN, owner):
            self._seen[name] = None
            self._foreign.add(repr(name))
        else:
            self._seen[name] = None
            self._unusable.add(f"{where} {name[:80]!r}")

    def _count(self, paging: _Paging, length: int) -> None:
        if paging.total is not None:
            self._total = paging.total
            self._most_total = max(self._most_total, paging.total)
        if paging.total_pages is not None:
            self._most_pages = max(self._most_pages, paging.total_pages)
        if not self._page_length:
            self._page_length = paging.limit or length

    def _budget(self) -> int:
        """Pages the server's own figures allow, with slack; the hard cap without them."""
        derived = self._most_pages
        if self._total is not None and self._page_length:
            derived = max(derived, math.ceil(self._most_total / self._page_length))
        if not derived:
            return MAX_PAGES
        return min(MAX_PAGES, derived + PAGE_SLACK)

    def finish(self) -> Discovery:
        """The discovery, or the PayloadError of a listing shorter than its `total`."""
        listed, total = self.listed, self._total
        fell = self._most_total - total if total is not None else 0
        stopped = (
            f"; {fell} more stopped being listed while paging (total fell from "
            f"{self._most_total} to {total}: deleted or hidden meanwhile), not counted as missing"
            if fell
            else ""
        )
        if total is not None and listed < total:
            raise PayloadError(
                f"listModels ended after {self.pages} page(s) with {listed} distinct model(s), "
                f"but the registry's total is {total}: {total - listed} model(s) were never "
                f"listed{stopped}; the org's models are not all known",
                error_type=ErrorType.LISTING_INCOMPLETE,
            )
        warnings = []
        if stopped:
            warnings.append(f"org {self.org}: all {listed} listed{stopped}")
        if self._unusable.count:
            warnings.append(
                f"org {self.org}: listModels listed {self._unusable.count} entry(ies) with no "
                f"usable model name, skipped: {self._unusable.text()}"
            )
        if self._foreign.count:
            warnings.append(
                f"org {self.org}: listModels listed {self._foreign.count} model(s) of other "
                f"orgs (public models), not fetched as {self.org}'s: {self._foreign.text()}"
            )
        return Discovery(
            self.org, tuple(sorted(self._own)), self.pages, tuple(warnings), listed, total
        )


def _page(payload: Any, where: str) -> tuple[list[Any], _Paging]:
    """The entries of one page (`models`, or `items` as some deployments answer) and its
    paging fields, each of the type the contract gives it."""
    if not isinstance(payload, dict):
        raise PayloadError(f"{where}: body is a JSON {type(payload).__name__}, expected an object")
    key = next((k for k in _LIST_KEYS if isinstance(payload.get(k), list)), None)
    if key is None:
        raise PayloadError(f"{where}: no `models` (or `items`) list in the body")
    has_next = payload.get("has_next")
    if has_next is not None and not isinstance(has_next, bool):
        raise PayloadError(f"{where}: has_next is a {type(has_next).__name__}, not a boolean")
    return payload[key], _Paging(
        has_next,
        _count(payload, "total_pages", where),
        _count(payload, "total", where),
        _count(payload, "limit", where) or None,
    )


def _count(payload: dict[str, Any], key: str, where: str) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{where}: {key} is {str(value)[:40]!r}, not a count")
    return value
