"""The memory budget: version lists in flight are bounded by bytes, not by concurrency."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import TOKEN, ScriptedServer, config_document, json_reply, wait_until, write_config

from connector.config import RegistrySettings, load_config
from connector.credentials import Credential
from connector.errors import PayloadError, SkippedError
from connector.extraction.run import extract
from connector.extraction.target import FetchedTarget, fetch_target
from connector.http.budget import MEMORY_PER_BODY_BYTE, BudgetAbortedError, MemoryBudget, Share
from connector.http.client import RegistryClient
from connector.simulator.faults import Reply


def large_body(versions: int = 2000) -> dict[str, Any]:
    """A version list of `versions` summary objects (about 200 KB) of model `m`, named by its
    slug (as the contract allows), so that it answers for `m` in any org."""
    entries = [
        {
            "id": f"id-{i:06d}",
            "name": "m",
            "version": f"1.0.{i}",
            "created_at": "2026-01-01T00:00:00Z",
            "download_count": i,
            "framework": "pytorch",
        }
        for i in range(versions)
    ]
    return {"name": "m", "latest": entries[-1], "versions": entries}


def settings(url: str, **overrides: Any) -> RegistrySettings:
    return RegistrySettings.model_validate(
        {"base_url": url, "token": TOKEN, "timeout_seconds": 5, "concurrency": 8, **overrides}
    )


def holders(budget: MemoryBudget, amounts: list[int]) -> tuple[list[Share], list[threading.Thread]]:
    """Threads that each acquire one amount; the shares they got, in the order granted."""
    granted: list[Share] = []
    lock = threading.Lock()

    def take(amount: int) -> None:
        share = budget.acquire(amount)
        with lock:
            granted.append(share)

    threads = [threading.Thread(target=take, args=(amount,)) for amount in amounts]
    for thread in threads:
        thread.start()
    return granted, threads


def test_eight_in_flight_never_hold_more_than_the_budget() -> None:
    budget = MemoryBudget(limit=2 * 100)
    granted, threads = holders(budget, [100] * 8)
    wait_until(lambda: len(granted) == 2 and budget.waiting == 6)
    assert budget.held == 200
    for released in range(8):  # each release lets exactly the next one in
        wait_until(lambda: len(granted) == min(8, released + 2))  # noqa: B023
        assert budget.held == min(200, 100 * (8 - released))
        granted[released].release()
    for thread in threads:
        thread.join(timeout=10)
    assert budget.high_water == 200
    assert budget.held == 0


def test_a_share_larger_than_the_budget_proceeds_alone() -> None:
    budget = MemoryBudget(limit=100)
    small = budget.acquire(40)
    granted, threads = holders(budget, [500])
    wait_until(lambda: budget.waiting == 1)  # it waits for the small share to go...
    small.release()
    threads[0].join(timeout=10)
    [big] = granted  # ...then takes more than the whole budget, never deadlocking
    assert budget.held == 500
    after, later = holders(budget, [1])
    wait_until(lambda: budget.waiting == 1)  # nothing joins it while it is held
    assert after == []
    big.release()
    later[0].join(timeout=10)
    assert budget.high_water == 500  # the single oversize share, nothing on top of it
    after[0].release()
    assert budget.held == 0


def test_waiters_are_served_in_order_so_a_large_one_is_not_starved() -> None:
    budget = MemoryBudget(limit=100)
    first = budget.acquire(60)
    big, big_thread = holders(budget, [100])
    wait_until(lambda: budget.waiting == 1)
    small, small_thread = holders(budget, [10])  # would fit now, but the large one came first
    wait_until(lambda: budget.waiting == 2)
    assert small == []
    first.release()
    big_thread[0].join(timeout=10)
    assert big and small == []
    big[0].release()
    small_thread[0].join(timeout=10)
    assert small[0].amount == 10


def test_a_share_is_taken_without_waiting_only_when_it_fits_and_nobody_waits() -> None:
    """`try_acquire`, the client's way to skip pausing the deadline: never past the budget and
    never ahead of a waiter."""
    budget = MemoryBudget(limit=100)
    first = budget.try_acquire(60)
    assert first is not None and budget.held == 60
    assert budget.try_acquire(50) is None and budget.held == 60  # does not fit: nothing held
    big, big_thread = holders(budget, [100])
    wait_until(lambda: budget.waiting == 1)
    assert budget.try_acquire(10) is None  # it would fit, but the waiter came first
    first.release()
    big_thread[0].join(timeout=10)
    big[0].release()
    alone = budget.try_acquire(500)  # larger than the budget: alone, when nothing is held
    assert alone is not None and budget.high_water == 500
    alone.release()
    budget.abort()
    assert budget.try_acquire(1) is None and budget.held == 0


def test_release_is_idempotent_and_abort_wakes_every_waiter() -> None:
    budget = MemoryBudget(limit=10)
    share = budget.acquire(10)
    errors: list[BaseException] = []

    def take() -> None:
        try:
            budget.acquire(5)
        except BudgetAbortedError as exc:
            errors.append(exc)

    waiters = [threading.Thread(target=take) for _ in range(3)]
    for thread in waiters:
        thread.start()
    wait_until(lambda: budget.waiting == 3)
    budget.abort()
    for thread in waiters:
        thread.join(timeout=10)
    assert len(errors) == 3
    share.release()
    share.release()
    assert budget.held == 0


def test_version_lists_in_flight_hold_at_most_the_budget(tmp_path: Path) -> None:
    """Eight workers fetch large version lists while the rows of none are written yet: two
    bodies' worth of budget lets two through; each of the others waits for a release."""
    reply = json_reply(200, large_body())
    body_bytes = len(reply.body)
    cost = body_bytes * MEMORY_PER_BODY_BYTE
    with (
        ScriptedServer([reply]) as server,
        RegistryClient(settings(server.url, memory_budget_bytes=2 * cost)) as client,
    ):
        fetched: list[FetchedTarget] = []
        lock = threading.Lock()

        def fetch(model: str) -> None:
            target = fetch_target(client, "acme", model, Credential(TOKEN), "missing")
            with lock:
                fetched.append(target)

        # The same model eight times: every answer must name the model asked for.
        threads = [threading.Thread(target=fetch, args=("m",)) for _ in range(8)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(fetched) == 2 and client.memory.waiting == 6)
        assert client.memory.held == 2 * cost
        for done in range(8):  # each release lets exactly the next one in
            wait_until(lambda: len(fetched) == min(8, done + 2))  # noqa: B023
            assert client.memory.held == min(2, 8 - done) * cost
            share = fetched[done].share
            assert share is not None and share.amount == cost
            assert len(fetched[done].rows) == 2000
            share.release()  # as the run does once the rows are in the writer
        for thread in threads:
            thread.join(timeout=10)
    assert client.memory.high_water == 2 * cost
    assert client.memory.held == 0


def test_a_failed_body_gives_its_share_back() -> None:
    bad = Reply(200, b'{"name": "acme/m", "versions": [1]}')  # valid JSON, invalid payload
    with (
        ScriptedServer([bad, Reply(200, b"{not json")]) as server,
        RegistryClient(settings(server.url, memory_budget_bytes=1024 * 1024)) as client,
    ):
        for _ in range(2):
            with pytest.raises(PayloadError):
                fetch_target(client, "acme", "m", Credential(TOKEN), "missing")
            assert client.memory.held == 0
        assert client.memory.high_water > 0


def test_a_compressed_body_is_counted_at_its_decoded_size() -> None:
    document = large_body(500)
    raw = json.dumps(document).encode()
    reply = Reply(200, gzip.compress(raw), headers=(("Content-Encoding", "gzip"),))
    with ScriptedServer([reply]) as server, RegistryClient(settings(server.url)) as client:
        result = client.list_model_versions("acme", "m")
        assert result.payload == document
        assert result.share is not None
        assert result.share.amount == len(raw) * MEMORY_PER_BODY_BYTE
        result.share.release()


def test_waiting_for_the_budget_does_not_count_against_the_attempts_deadline() -> None:
    reply = json_reply(200, large_body(50))
    with (
        ScriptedServer([reply]) as server,
        RegistryClient(settings(server.url, timeout_seconds=0.3)) as client,
    ):
        everything = client.memory.acquire(client.memory.limit)
        results: list[Any] = []
        worker = threading.Thread(
            target=lambda: results.append(client.list_model_versions("acme", "m"))
        )
        worker.start()
        wait_until(lambda: client.memory.waiting == 1)
        threading.Event().wait(0.6)  # twice the attempt's deadline, spent waiting on us
        everything.release()
        worker.join(timeout=10)
    [result] = results
    assert result.attempts == 1
    assert result.payload["name"] == "m"


def test_an_abort_ends_a_wait_for_the_budget_as_skipped() -> None:
    with (
        ScriptedServer([json_reply(200, large_body(50))]) as server,
        RegistryClient(settings(server.url)) as client,
    ):
        everything = client.memory.acquire(client.memory.limit)
        errors: list[BaseException] = []

        def fetch() -> None:
            try:
                client.list_model_versions("acme", "m")
            except SkippedError as exc:
                errors.append(exc)

        worker = threading.Thread(target=fetch)
        worker.start()
        wait_until(lambda: client.memory.waiting == 1)
        client.abort()
        worker.join(timeout=10)
        everything.release()
    [error] = errors
    assert "abandoned" in str(error)
    assert client.requests_by_status["abandoned"] == 1


def test_a_run_whose_every_body_is_over_the_budget_completes(
    tmp_path: Path, token_env: str
) -> None:
    """A budget smaller than one body: each list is handled alone, each share released once
    its rows are written (a leaked one would leave the next waiting for ever)."""
    with ScriptedServer([json_reply(200, large_body())]) as server:
        document = config_document(
            server,  # type: ignore[arg-type]
            tmp_path / "out",
            orgs=[{"name": f"org{i}", "models": ["m"]} for i in range(8)],
            registry_settings={"concurrency": 8, "memory_budget_bytes": 1024 * 1024},
        )
        config = load_config(write_config(tmp_path / "c.yaml", document))
        summary = extract(config, progress=False)
    assert summary.exit_code == 0
    assert summary.rows == 8 * 2000
