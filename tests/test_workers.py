"""WorkerPool: every result once, bounded buffering, early stop, crashes surface."""

from __future__ import annotations

import threading

import pytest

from connector.extraction.workers import WorkerPool


def test_every_item_is_processed_once() -> None:
    results = sorted(WorkerPool(lambda x: x * 2, range(1000), threads=8))
    assert results == [x * 2 for x in range(1000)]


def test_at_most_threads_items_in_flight_and_buffer_bounded() -> None:
    started = 0
    changed = threading.Condition()
    limit = 1 + 8 + 4  # one consumed, a queue of 8, one result each thread holds on a full queue

    def work(item: int) -> int:
        nonlocal started
        with changed:
            started += 1
            changed.notify_all()
        return item

    pool = WorkerPool(work, range(10_000), threads=4)
    iterator = iter(pool)
    next(iterator)
    with changed:
        # Woken by every start: once the limit is reached every thread is blocked on the full
        # queue, so an unbounded pool would already have run past it. (The timeout only
        # guards against a hang; nothing is measured.)
        assert changed.wait_for(lambda: started >= limit, timeout=30)
        assert started == limit
    assert len(list(iterator)) == 9_999


def test_stop_takes_no_new_items() -> None:
    pool = WorkerPool(lambda x: x, range(10_000), threads=2)
    seen = []
    for result in pool:
        seen.append(result)
        if len(seen) == 5:
            pool.stop()
    assert 5 <= len(seen) < 100


def test_a_crash_in_a_worker_is_raised_to_the_consumer() -> None:
    def work(item: int) -> int:
        if item == 7:
            raise RuntimeError("boom")
        return item

    with pytest.raises(RuntimeError, match="boom"):
        list(WorkerPool(work, range(100), threads=3))


def test_consumer_leaving_early_does_not_leave_threads_blocked() -> None:
    before = threading.active_count()
    for result in WorkerPool(lambda x: x, range(10_000), threads=4):
        if result >= 0:
            break
    assert threading.active_count() == before


def test_leaving_early_raises_the_abandoned_flag() -> None:
    abandoned = threading.Event()
    for _ in WorkerPool(lambda x: x, range(10_000), threads=2, abandoned=abandoned.set):
        break
    assert abandoned.is_set()
    finished = threading.Event()
    list(WorkerPool(lambda x: x, range(10), threads=2, abandoned=finished.set))
    assert not finished.is_set()  # a pool run to the end was not abandoned
