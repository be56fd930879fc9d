"""The simulator's listModels and getModelVersion against the contract: paging, list keys,
the detail fields, token checks and fault injection on those routes too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from helpers import SUMMARY_KEYS, assert_envelope

from connector.simulator.catalog import DETAIL_FIELDS
from connector.simulator.server import FaultPlan, SimulatedRegistry

MakeRegistry = Callable[..., SimulatedRegistry]


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.headers["Authorization"] = "Bearer sim-token"
        yield http


@pytest.fixture
def make(start_simulator: MakeRegistry) -> MakeRegistry:
    def start(**fields: Any) -> SimulatedRegistry:
        return start_simulator(token="sim-token", **fields)

    return start


def models_url(registry: SimulatedRegistry, org: str = "org-00", **query: Any) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{registry.url}/api/v1/org/{org}/models" + (f"?{params}" if params else "")


def detail_url(registry: SimulatedRegistry, version: str, model: str = "model-0000") -> str:
    return f"{registry.url}/api/v1/org/org-00/models/{model}/{version}"


def test_list_models_pages_with_the_contract_defaults_and_limits(
    make: MakeRegistry, session: requests.Session
) -> None:
    registry = make(orgs=1, models_per_org=120, empty_models=1)
    first = session.get(models_url(registry)).json()
    assert (first["page"], first["limit"], first["total"]) == (1, 50, 119)  # defaults
    assert (first["total_pages"], first["has_next"], first["has_prev"]) == (3, True, False)
    assert len(first["models"]) == 50 and set(first["models"][0]) == SUMMARY_KEYS
    pages = [session.get(models_url(registry, page=p, limit=100)).json() for p in (1, 2, 3)]
    assert [len(p["models"]) for p in pages] == [100, 19, 0]
    assert [(p["total_pages"], p["has_next"], p["has_prev"]) for p in pages] == [
        (2, True, False),
        (2, False, True),
        (2, False, True),
    ]
    names = [m["name"] for p in pages for m in p["models"]]
    assert len(names) == len(set(names)) == 119
    assert "org-00/model-0119" not in names  # the empty model has no summary to list
    for query in (
        {"limit": 101},
        {"limit": 0},
        {"page": 0},
        {"page": "x"},
        {"sort_by": "size"},
        {"sort_dir": "up"},
        {"include_public": "yes"},
    ):
        assert_envelope(session.get(models_url(registry, **query)), 422, "validation_error")


def test_a_capped_limit_pages_by_the_paging_fields(
    make: MakeRegistry, session: requests.Session
) -> None:
    registry = make(orgs=1, models_per_org=130, page_cap=50)
    pages = [session.get(models_url(registry, page=p, limit=100)).json() for p in (1, 2, 3)]
    assert [len(p["models"]) for p in pages] == [50, 50, 30]  # the cap, not the 100 asked
    assert [(p["limit"], p["total"], p["total_pages"]) for p in pages] == [(50, 130, 3)] * 3
    assert [p["has_next"] for p in pages] == [True, True, False]
    registry.set_faults(FaultPlan(listing_hidden=30))  # counted in total, never listed
    pages = [session.get(models_url(registry, page=p, limit=100)).json() for p in (1, 2, 3)]
    assert [len(p["models"]) for p in pages] == [50, 50, 0]
    assert [(p["total"], p["has_next"]) for p in pages] == [(130, True), (130, False), (130, False)]


def test_include_public_lists_other_orgs_public_models_after_the_org_s_own(
    make: MakeRegistry, session: requests.Session
) -> None:
    registry = make(orgs=3, models_per_org=8)
    own = session.get(models_url(registry, include_public="false")).json()["models"]
    both = session.get(models_url(registry, include_public="true")).json()["models"]
    assert [m["name"] for m in both[: len(own)]] == [m["name"] for m in own]
    others = both[len(own) :]
    assert others and all(m["is_public"] and not m["name"].startswith("org-00/") for m in others)


def test_items_key_and_paging_quirks(make: MakeRegistry, session: requests.Session) -> None:
    registry = make(orgs=1, models_per_org=30, models_key="items")
    assert "models" not in session.get(models_url(registry)).json()
    assert len(session.get(models_url(registry, limit=20)).json()["items"]) == 20
    registry.set_faults(FaultPlan(listing_quirk="shift"))
    page1 = session.get(models_url(registry, limit=20)).json()["items"]
    page2 = session.get(models_url(registry, page=2, limit=20)).json()["items"]
    assert page2[0] == page1[-1]  # overlap by one, as when a model is created during paging
    registry.set_faults(FaultPlan(listing_quirk="repeat"))
    assert (
        session.get(models_url(registry, page=2)).json()["items"]
        == session.get(models_url(registry)).json()["items"]
    )


def test_get_model_version_serves_the_detail_of_live_versions_only(
    make: MakeRegistry, session: requests.Session
) -> None:
    registry = make(orgs=1, models_per_org=2)
    truth = {
        r["version"]: r for r in registry.expected_rows(1, "all") if r["model"] == "model-0000"
    }
    for version, row in truth.items():
        body = session.get(detail_url(registry, version)).json()
        assert set(body) == SUMMARY_KEYS | set(DETAIL_FIELDS)
        assert body["download_count"] == row["download_count"]
        assert {k: body[k] for k in DETAIL_FIELDS} == {k: row[k] for k in DETAIL_FIELDS}
        assert body["license"] == row["license"] and body["tags"] == row["tags"]
    assert_envelope(session.get(detail_url(registry, "9.9.9")), 404, "not_found_error")
    assert_envelope(session.get(detail_url(registry, "1.0", "ghost")), 404, "not_found_error")


@pytest.mark.parametrize("route", ["models", "detail"])
def test_token_checks_and_faults_apply_to_both_routes(
    route: str, make: MakeRegistry, session: requests.Session
) -> None:
    registry = make(orgs=2, models_per_org=3)
    version = registry.expected_rows(1)[0]["version"]
    url = models_url(registry) if route == "models" else detail_url(registry, version)
    assert session.get(url).status_code == 200
    assert_envelope(requests.get(url, timeout=5), 401, "authentication_error")
    registry.set_faults(FaultPlan(forbidden_orgs=frozenset({"org-00"})))
    assert_envelope(session.get(url), 403, "permission_error")
    registry.set_faults(FaultPlan(rate_5xx=1.0))
    assert session.get(url).status_code in (500, 502, 503, 504)
    registry.set_faults(FaultPlan(upgrade_required=True))
    assert_envelope(session.get(url), 426, "upgrade_required")
    registry.set_faults(FaultPlan())
    operation = "listModels" if route == "models" else "getModelVersion"
    assert registry.stats().by_operation == {operation: 5}


def test_listing_and_detail_status_faults(make: MakeRegistry, session: requests.Session) -> None:
    registry = make(orgs=2, models_per_org=3)
    version = registry.expected_rows(1)[0]["version"]
    registry.set_faults(
        FaultPlan(
            listing_status={"org-00": 503},
            detail_status={f"org-00/model-0000/{version}": 404},
        )
    )
    assert session.get(models_url(registry)).status_code == 503
    assert session.get(models_url(registry, org="org-01")).status_code == 200
    assert_envelope(session.get(detail_url(registry, version)), 404, "not_found_error")
    with pytest.raises(ValueError, match="listing_quirk"):
        FaultPlan(listing_quirk="sideways")
    with pytest.raises(ValueError, match="detail_status"):
        FaultPlan(detail_status={"org-00/model-0000/1.0": 200})
