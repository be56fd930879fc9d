"""The simulated registry, exercised over real loopback sockets as the connector will use it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from helpers import SUMMARY_KEYS, assert_envelope

from connector.cli.simulate import simulate
from connector.simulator.catalog import DETAIL_FIELDS, RICH_FIELDS
from connector.simulator.faults import MALFORMED_KINDS, OVERSIZE_BYTES
from connector.simulator.server import (
    FaultPlan,
    SimulatedRegistry,
    SimulatorConfig,
    startup_notes,
)

ROOT = Path(__file__).resolve().parents[1]
MakeRegistry = Callable[..., SimulatedRegistry]


@pytest.fixture
def make_registry(start_simulator: MakeRegistry) -> MakeRegistry:
    """Start registries with the given config fields (the simulator's own default token)."""

    def make(**fields: Any) -> SimulatedRegistry:
        fields.setdefault("token", "sim-token")
        return start_simulator(**fields)

    return make


@pytest.fixture
def registry(make_registry: MakeRegistry) -> SimulatedRegistry:
    return make_registry()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.headers["Authorization"] = "Bearer sim-token"
        yield http


def versions_url(
    registry: SimulatedRegistry, org: str = "org-00", model: str = "model-0000"
) -> str:
    return f"{registry.url}/api/v1/org/{org}/models/{model}/versions"


def rows_from_payload(org: str, model: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten a body the way the contract says: string entries borrow `latest` when it is them."""
    latest = payload["latest"]
    rows = []
    for rank, entry in enumerate(payload["versions"], 1):
        version = entry["version"] if isinstance(entry, dict) else entry
        known = entry if isinstance(entry, dict) else None
        if known is None and latest is not None and latest["version"] == version:
            known = latest
        created = known and datetime.fromisoformat(known["created_at"])
        updated = known and known["updated_at"] and datetime.fromisoformat(known["updated_at"])
        rows.append(
            {
                "org": org,
                "model": model,
                "model_name": payload["name"],
                "version": version,
                "version_rank": rank,
                "is_latest": latest is not None and latest["version"] == version,
                "artifact_id": known and known["id"],
                "created_at": created,
                "download_count": known and known["download_count"],
                "framework": known and known["framework"],
                "is_public": known and known["is_public"],
                "origin": known and known["origin"],
                **{field: known and known[field] for field in RICH_FIELDS},
                "updated_at": updated,
                **dict.fromkeys(DETAIL_FIELDS),  # only getModelVersion has them
            }
        )
    return rows


def outcome(http: requests.Session, url: str) -> int | str:
    try:
        with http.get(url, timeout=5) as response:
            return response.status_code
    except requests.ConnectionError:
        return "reset"


# -- data model --------------------------------------------------------------------------------


def test_same_seed_serves_identical_bytes_and_another_seed_differs(
    make_registry: MakeRegistry, session: requests.Session
) -> None:
    first, twin, other = make_registry(seed=7), make_registry(seed=7), make_registry(seed=8)
    for org, model in first.targets():
        body = session.get(versions_url(first, org, model)).content
        assert body == session.get(versions_url(twin, org, model)).content
        assert body != session.get(versions_url(other, org, model)).content


@pytest.mark.parametrize("shape", ["strings", "objects", "mixed"])
def test_shapes_follow_the_contract_and_match_expected_rows(
    make_registry: MakeRegistry, session: requests.Session, shape: str
) -> None:
    registry = make_registry(versions_shape=shape, empty_models=1)
    rows = []
    for org, model in registry.targets():
        payload = session.get(versions_url(registry, org, model)).json()
        assert payload == registry.expected_payload(org, model)
        assert payload["name"] == f"{org}/{model}"
        entries = payload["versions"]
        if payload["latest"] is not None:
            assert set(payload["latest"]) == SUMMARY_KEYS
        for index, entry in enumerate(entries):
            is_object = shape == "objects" or (shape == "mixed" and index % 2 == 1)
            assert isinstance(entry, dict) == is_object
            if is_object:
                assert set(entry) == SUMMARY_KEYS and entry["name"] == payload["name"]
        rows.extend(rows_from_payload(org, model, payload))
    assert rows == registry.expected_rows(version_detail="off")


def test_catalog_has_single_and_empty_models_and_increasing_timestamps(
    make_registry: MakeRegistry,
) -> None:
    registry = make_registry(orgs=3, models_per_org=4, empty_models=2, versions_shape="objects")
    payloads = {t: registry.expected_payload(*t) for t in registry.targets()}
    empty = [t for t, p in payloads.items() if not p["versions"]]
    assert empty == [("org-00", "model-0002"), ("org-00", "model-0003")]
    assert all(payloads[t]["latest"] is None for t in empty)
    assert any(len(p["versions"]) == 1 for p in payloads.values())
    start = datetime(2026, 1, 1, tzinfo=UTC)
    by_target: dict[str, list[dict[str, Any]]] = {}
    for row in registry.expected_rows(day=1):
        by_target.setdefault(row["model_name"], []).append(row)
    for rows in by_target.values():
        created = [r["created_at"] for r in reversed(rows) if r["created_at"] is not None]
        assert created == sorted(created) and len(set(created)) == len(created)
        assert rows[0]["created_at"] < start and rows[0]["created_at"].tzinfo is not None
    assert all(
        isinstance(r["download_count"], int) for r in registry.expected_rows() if r["is_latest"]
    )


def test_set_day_grows_downloads_and_releases_new_versions(
    registry: SimulatedRegistry, session: requests.Session
) -> None:
    day1 = session.get(versions_url(registry)).json()
    registry.set_day(2)
    day2 = session.get(versions_url(registry)).json()
    assert day2["versions"][1:] == day1["versions"]
    new = day2["latest"]
    assert new["version"] == day2["versions"][0] != day1["latest"]["version"]
    assert new["created_at"].startswith("2026-01-02T") and new["download_count"] < 10
    registry.set_day(10)
    assert len(session.get(versions_url(registry)).json()["versions"]) == len(day1["versions"]) + 2

    def count(version: str, day: int) -> int:
        value = registry.download_count("org-00", "model-0000", version, day)
        assert value is not None
        return value

    gains = [count(v, 10) - count(v, 1) for v in day1["versions"]]
    assert all(g >= 0 for g in gains) and 0 in gains and any(g > 0 for g in gains)


def test_download_count_is_the_ground_truth(registry: SimulatedRegistry) -> None:
    latest = registry.expected_payload("org-00", "model-0000", day=3)["latest"]
    assert (
        registry.download_count("org-00", "model-0000", latest["version"], 3)
        == (latest["download_count"])
    )
    assert registry.download_count("org-00", "model-0000", latest["version"], 1) is None
    assert registry.download_count("org-00", "model-0000", "99.0.0", 3) is None
    with pytest.raises(KeyError):
        registry.download_count("org-00", "nope", "1.0.0", 1)


def test_list_models_paginates_and_validates(
    make_registry: MakeRegistry, session: requests.Session
) -> None:
    registry = make_registry(models_per_org=5, empty_models=1)
    url = f"{registry.url}/api/v1/org/org-00/models"
    pages = [session.get(url, params={"page": p, "limit": 3}).json() for p in (1, 2, 3)]
    assert [len(p["models"]) for p in pages] == [3, 1, 0]
    assert {p["total"] for p in pages} == {4} and pages[1]["page"] == 2 and pages[1]["limit"] == 3
    names = [m["name"] for p in pages for m in p["models"]]
    assert names == [f"org-00/model-{j:04d}" for j in range(4)]
    assert pages[0]["models"][0] == registry.expected_payload("org-00", "model-0000")["latest"]
    assert len(session.get(url).json()["models"]) == 4
    body = assert_envelope(session.get(url, params={"limit": 101}), 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "limit"]
    assert_envelope(session.get(f"{registry.url}/api/v1/org/org-99/models"), 404, "not_found_error")


def test_get_model_version_returns_the_detail(
    registry: SimulatedRegistry, session: requests.Session
) -> None:
    base = f"{registry.url}/api/v1/org/org-00/models/model-0000"
    latest = registry.expected_payload("org-00", "model-0000")["latest"]
    detail = session.get(f"{base}/{latest['version']}").json()
    assert {k: detail[k] for k in SUMMARY_KEYS} == latest
    assert set(detail) == SUMMARY_KEYS | {"file_size_bytes"}
    next_version = registry.expected_payload("org-00", "model-0000", day=2)["latest"]["version"]
    assert_envelope(session.get(f"{base}/{next_version}"), 404, "not_found_error")
    registry.set_day(2)
    assert session.get(f"{base}/{next_version}").status_code == 200


# -- auth and fixed answers --------------------------------------------------------------------


def test_token_is_checked_per_org(make_registry: MakeRegistry) -> None:
    registry = make_registry(org_tokens={"org-01": "other"})
    url00, url01 = versions_url(registry, "org-00"), versions_url(registry, "org-01")
    with requests.Session() as http:
        body = assert_envelope(http.get(url00), 401, "authentication_error")
        assert body["detail"]
        bearer = {"Authorization": "Bearer sim-token"}
        assert_envelope(http.get(url00, headers={"Authorization": "Bearer x"}), 401, body["type"])
        assert http.get(url00, headers=bearer).status_code == 200
        assert_envelope(http.get(url01, headers=bearer), 401, "authentication_error")
        assert http.get(url01, headers={"Authorization": "Bearer other"}).status_code == 200


def test_fixed_errors_use_the_envelope(
    registry: SimulatedRegistry, session: requests.Session
) -> None:
    registry.set_faults(
        FaultPlan(forbidden_orgs=frozenset({"org-01"}), not_found=frozenset({"org-00/model-0001"}))
    )
    assert_envelope(session.get(versions_url(registry, "org-01")), 403, "permission_error")
    url = versions_url(registry, "org-00", "model-0001")
    assert_envelope(session.get(url), 404, "not_found_error")
    assert_envelope(session.get(versions_url(registry, model="ghost")), 404, "not_found_error")
    assert_envelope(session.get(f"{registry.url}/nowhere"), 404, "not_found_error")
    assert_envelope(session.post(versions_url(registry)), 405, "method_not_allowed")
    registry.set_faults(FaultPlan(upgrade_required=True))
    assert_envelope(session.get(versions_url(registry)), 426, "upgrade_required")
    assert_envelope(requests.get(versions_url(registry), timeout=5), 426, "upgrade_required")


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, "bad_request_error"), (409, "conflict_error"), (422, "validation_error"),
     (500, "internal_server_error")],
)  # fmt: skip
def test_status_for_answers_that_status(
    registry: SimulatedRegistry, session: requests.Session, status: int, error_type: str
) -> None:
    registry.set_faults(FaultPlan(status_for={"org-00/model-0000": status}))
    body = assert_envelope(session.get(versions_url(registry)), status, error_type)
    if status == 422:
        assert {"loc", "msg", "type"} <= set(body["errors"][0])
    assert session.get(versions_url(registry, model="model-0001")).status_code == 200


def test_fail_first_answers_503_then_recovers(
    registry: SimulatedRegistry, session: requests.Session
) -> None:
    registry.set_faults(FaultPlan(fail_first={"org-00/model-0000": 2}))
    statuses = [session.get(versions_url(registry)).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert session.get(versions_url(registry, model="model-0001")).status_code == 200
    with pytest.raises(ValueError, match="must not be negative"):
        FaultPlan(fail_first={"org-00/model-0000": -1})


def test_redirect_sends_location_and_requests_drops_the_token(
    make_registry: MakeRegistry, session: requests.Session
) -> None:
    registry, elsewhere = make_registry(), make_registry()
    target = versions_url(elsewhere)
    registry.set_faults(FaultPlan(redirect={"org-00/model-0000": target}))
    response = session.get(versions_url(registry), allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"] == target
    assert session.get(versions_url(registry)).status_code == 401
    assert elsewhere.stats().authorization_headers_seen == [None]


# -- malformed bodies --------------------------------------------------------------------------


def _check_malformed(kind: str, response: requests.Response) -> None:
    if kind == "html_200":
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.text.startswith("<html>")
        return
    assert response.headers["Content-Type"] == "application/json"
    if kind == "empty_body":
        assert response.content == b""
        return
    if kind == "invalid_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)
        return
    body = response.json()
    checks: dict[str, Callable[[Any], bool]] = {
        "versions_not_list": lambda b: isinstance(b["versions"], dict),
        "count_string": lambda b: b["latest"]["download_count"] == "12",
        "count_negative": lambda b: b["latest"]["download_count"] == -5,
        "bad_timestamp": lambda b: b["latest"]["created_at"] == "yesterday",
        "duplicate_versions": lambda b: len(set(b["versions"])) < len(b["versions"]),
        "missing_name": lambda b: "name" not in b and "versions" in b,
        "wrong_type": lambda b: isinstance(b, list),
        "wrong_model": lambda b: b["name"] == b["latest"]["name"] == "org-00/model-0000-other",
    }
    assert checks[kind](body)


@pytest.mark.parametrize("kind", sorted(MALFORMED_KINDS - {"oversize", "drip"}))
def test_malformed_kinds_break_the_body_as_named(
    registry: SimulatedRegistry, session: requests.Session, kind: str
) -> None:
    registry.set_faults(FaultPlan(malformed={"org-00/model-0000": kind}))
    response = session.get(versions_url(registry))
    assert response.status_code == 200
    _check_malformed(kind, response)
    assert session.get(versions_url(registry, model="model-0001")).status_code == 200


def test_oversize_body_is_20_mib_of_valid_json(
    registry: SimulatedRegistry, session: requests.Session
) -> None:
    registry.set_faults(FaultPlan(malformed={"org-00/model-0000": "oversize"}))
    with session.get(versions_url(registry), stream=True) as response:
        assert int(response.headers["Content-Length"]) == OVERSIZE_BYTES
        assert len(response.raw.read(1024)) == 1024  # a client may give up early
    response = session.get(versions_url(registry))
    assert len(response.content) == OVERSIZE_BYTES
    assert response.json()["name"] == "org-00/model-0000"


def test_drip_sends_headers_then_one_byte_at_a_time(
    registry: SimulatedRegistry, session: requests.Session
) -> None:
    registry.set_faults(FaultPlan(malformed={"org-00/model-0000": "drip"}))
    started = time.monotonic()
    with session.get(versions_url(registry), stream=True, timeout=5) as response:
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == 2048
        assert response.raw.read(2) == b'{"'
    assert time.monotonic() - started >= 0.2
    assert session.get(versions_url(registry, model="model-0001")).status_code == 200


# -- random faults -----------------------------------------------------------------------------


def test_reset_closes_the_connection_without_an_answer(
    registry: SimulatedRegistry, session: requests.Session
) -> None:
    registry.set_faults(FaultPlan(rate_reset=1.0))
    with pytest.raises(requests.ConnectionError):
        session.get(versions_url(registry))
    request = (
        "GET /api/v1/org/org-00/models/model-0000/versions HTTP/1.1\r\nHost: x\r\n"
        "Authorization: Bearer sim-token\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", registry.port), timeout=5) as raw:
        raw.sendall(request.encode())
        with pytest.raises(ConnectionResetError):
            raw.recv(1024)
    assert registry.stats().by_status == {0: 2}


@pytest.mark.parametrize("html", [False, True])
def test_5xx_faults_are_json_or_html(
    registry: SimulatedRegistry, session: requests.Session, html: bool
) -> None:
    registry.set_faults(FaultPlan(rate_5xx=1.0, html_5xx_fraction=1.0 if html else 0.0))
    for _ in range(6):
        response = session.get(versions_url(registry))
        assert response.status_code in {500, 502, 503, 504}
        content_type = response.headers["Content-Type"]
        assert content_type.startswith("text/html") if html else content_type == "application/json"


@pytest.mark.parametrize("retry_after", ["2", "Wed, 21 Oct 2026 07:28:00 GMT"])
def test_429_carries_retry_after(
    registry: SimulatedRegistry, session: requests.Session, retry_after: str
) -> None:
    registry.set_faults(FaultPlan(rate_429=1.0, retry_after=retry_after))
    response = session.get(versions_url(registry))
    assert_envelope(response, 429, "rate_limit_error")
    assert response.headers["Retry-After"] == retry_after


def test_slow_faults_and_latency_delay_without_blocking_others(
    make_registry: MakeRegistry, session: requests.Session
) -> None:
    registry = make_registry(latency_seconds=0.1)
    registry.set_faults(FaultPlan(rate_slow=1.0, slow_seconds=0.15))
    results: list[int] = []

    def fetch() -> None:
        with requests.get(versions_url(registry), headers=session.headers, timeout=5) as response:
            results.append(response.status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 6
    assert 0.25 <= elapsed < 0.75


def test_fault_sequence_per_target_ignores_interleaving(
    make_registry: MakeRegistry, session: requests.Session
) -> None:
    plan = FaultPlan(seed=3, rate_5xx=0.3, rate_429=0.2, rate_reset=0.1, rate_slow=0.1)
    first, second = make_registry(faults=plan), make_registry(faults=plan)
    targets = [("org-00", "model-0000"), ("org-01", "model-0002")]
    in_order = {t: [outcome(session, versions_url(first, *t)) for _ in range(12)] for t in targets}
    interleaved: dict[tuple[str, str], list[int | str]] = {t: [] for t in targets}
    for _ in range(12):
        for target in reversed(targets):
            interleaved[target].append(outcome(session, versions_url(second, *target)))
    assert in_order == interleaved
    assert len({o for seq in in_order.values() for o in seq}) >= 3
    first.set_faults(plan)  # a new plan replays from attempt 0
    replay = [outcome(session, versions_url(first, *targets[0])) for _ in range(12)]
    assert replay == in_order[targets[0]]


# -- stats and lifecycle -----------------------------------------------------------------------


def test_stats_count_requests_statuses_targets_and_tokens(
    registry: SimulatedRegistry, session: requests.Session
) -> None:
    session.get(versions_url(registry))
    session.get(versions_url(registry))
    requests.get(versions_url(registry, "org-01", "model-0001"), timeout=5).close()
    session.get(f"{registry.url}/api/v1/org/org-00/models")
    stats = registry.stats()
    assert stats.requests == 4
    assert stats.by_status == {200: 3, 401: 1}
    assert stats.by_target == {"org-00/model-0000": 2, "org-01/model-0001": 1}
    assert stats.authorization_headers_seen == ["Bearer sim-token"] * 2 + [None, "Bearer sim-token"]
    registry.reset_stats()
    assert registry.stats().requests == 0 and registry.stats().authorization_headers_seen == []


def test_lifecycle_and_validation() -> None:
    registry = SimulatedRegistry()
    with pytest.raises(RuntimeError):
        _ = registry.url
    with registry:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", registry.url)
        assert registry.targets()[0] == ("org-00", "model-0000") and len(registry.targets()) == 6
    registry.stop()
    with pytest.raises(ValueError, match="loopback"):
        SimulatorConfig(host="0.0.0.0")
    with pytest.raises(ValueError):
        SimulatorConfig(versions_shape="tuples")
    with pytest.raises(ValueError):
        FaultPlan(malformed={"org-00/model-0000": "nope"})
    with pytest.raises(ValueError):
        FaultPlan(rate_5xx=0.7, rate_429=0.7)
    with pytest.raises(ValueError):
        FaultPlan(retry_after="soon")
    with pytest.raises(ValueError, match="auth scheme 'basic'"):
        SimulatorConfig(org_auth_schemes={"org-00": "basic"})
    with pytest.raises(ValueError, match="page_cap"):
        SimulatorConfig(page_cap=0)
    with pytest.raises(ValueError, match="listing_hidden"):
        FaultPlan(listing_hidden=-1)
    assert SimulatorConfig(start_date=date(2025, 5, 1)).start_date.year == 2025


# -- command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_announces_serves_and_exits_cleanly(signum: int) -> None:
    code = "from connector.cli.simulate import simulate; simulate()"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIMULATOR_TOKEN": "cli-token"}
    command = [sys.executable, "-c", code, "--port", "0", "--versions-shape", "objects"]
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.fullmatch(r"listening on http://127\.0\.0\.1:\d+\n", line), line
        url = line.split()[-1] + "/api/v1/org/org-00/models/model-0000/versions"
        with requests.get(url, headers={"Authorization": "Bearer cli-token"}, timeout=5) as reply:
            assert reply.status_code == 200 and isinstance(reply.json()["versions"][0], dict)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


def test_cli_prints_its_token_calendar_and_a_config_that_works(tmp_path: Path) -> None:
    """What `connector simulate` prints on start is enough to run `connector extract` at it."""
    code = "from connector.cli.simulate import simulate; simulate()"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SIMULATOR_TOKEN", None)
    command = [sys.executable, "-c", code, "--day", "3", "--orgs", "1"]
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        notes = []
        for line in process.stdout:
            notes.append(line)
            if line.startswith("Stop with"):
                break
        text = "".join(notes)
        assert "token sim-token (every request must send Authorization: Bearer sim-token)" in text
        assert "simulated day 3 is 2026-01-03" in text
        snippet = text[text.index("# a config for this simulator") : text.index("Stop with")]
        document = yaml.safe_load(snippet)
        assert document["orgs"] == [
            {"name": "org-00", "models": ["model-0000", "model-0001", "model-0002"]}
        ]
        # The command files the simulated day's counts under the simulated date, not today's.
        command = re.search(r"MODEL_REGISTRY_TOKEN=sim-token (connector extract .*)$", text, re.M)
        assert command is not None
        assert command.group(1) == (
            "connector extract --config sim.yaml --date 2026-01-03 --allow-backdate"
        )
        document["output"]["uri"] = str(tmp_path / "data")
        config = tmp_path / "sim.yaml"
        config.write_text(yaml.safe_dump(document))
        arguments = command.group(1).split()[1:]
        extract = subprocess.run(
            [sys.executable, "-m", "connector", *arguments],
            cwd=tmp_path,
            env={**env, "MODEL_REGISTRY_TOKEN": "sim-token"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert extract.returncode == 0, extract.stdout + extract.stderr
    assert (tmp_path / "data" / "model_versions" / "snapshot_date=2026-01-03").is_dir()


def test_the_startup_notes_of_an_api_key_registry_say_so_and_configure_it(
    make_registry: MakeRegistry,
) -> None:
    registry = make_registry(auth_scheme="api-key", token="dn_key_sim", day=2)
    notes = startup_notes(registry)
    assert "token dn_key_sim (every request must send X-API-Key: dn_key_sim)" in notes
    snippet = notes[notes.index("# a config") : notes.index("Stop with")]
    registry_settings = yaml.safe_load(snippet)["registry"]
    assert registry_settings["auth_scheme"] == "api-key"
    assert "--date 2026-01-02 --allow-backdate" in notes


def test_simulate_serves_the_demos_versions_shape_by_default() -> None:
    from connector.cli.simulate import simulate
    from connector.simulator.demo import demo_simulator

    [option] = [p for p in simulate.params if p.name == "versions_shape"]
    assert option.default == demo_simulator().versions_shape == SimulatorConfig().versions_shape


@pytest.mark.parametrize(
    "arguments",
    [
        ["--host", "10.1.2.3"],
        ["--rate-5xx", "1.5"],
        ["--status", "org-00/model-0000=teapot"],
        ["--malformed", "org-00/model-0000=nope"],
        ["--not-found", "no-slash"],
        ["--versions-shape", "tuples"],
        ["--auth-scheme", "basic"],
        ["--page-cap", "0"],
    ],
)
def test_cli_rejects_invalid_values(arguments: list[str]) -> None:
    result = CliRunner().invoke(simulate, arguments)
    assert result.exit_code == 2
    assert "Invalid value" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--orgs", "999999999"], "--orgs"),
        (["--orgs", "1000", "--models-per-org", "1000"], "at most 200,000"),
        (["--orgs", "1", "--models-per-org", "200000", "--versions-per-model", "20"], "2,000,000"),
        (["--versions-per-model", "1001"], "--versions-per-model"),
        (["--day", "999999999"], "--day"),
        (["--latency-ms", "inf"], "--latency-ms"),
        (["--rate-slow", "0.5", "--slow-seconds", "1e309"], "--slow-seconds"),
    ],
)
def test_a_catalog_too_large_to_build_is_refused_before_serving(
    args: list[str], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog is built whole at start-up and the day feeds date arithmetic: a typo such as
    `--orgs 999999999` once ate the machine's memory, `--day 999999999` raised OverflowError on
    the first request. Refused by name, exit 2, before anything is served."""
    served: list[SimulatorConfig] = []
    monkeypatch.setattr("connector.cli.simulate.serve_forever_cli", served.append)
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 2, result.output
    assert words in result.output and not served
    assert CliRunner().invoke(simulate, ["--day", "36500"]).exit_code == 0 and len(served) == 1


def test_the_library_refuses_the_same_sizes() -> None:
    for bad in ({"orgs": 10**9}, {"day": 10**9}, {"versions_per_model": 10**6}):
        with pytest.raises(ValueError, match=r"at most|between"):
            SimulatorConfig(**bad)  # type: ignore[arg-type]
