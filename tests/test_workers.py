"""WorkerPool: every result once, bounded buffering, early stop, crashes surface."""

from __future__ import annotations

import threading
import time

import pytest

from connector.extraction.workers import WorkerPool


def test_every_item_is_processed_once() -> None:
    results = sorted(WorkerPool(lambda x: x * 2, range(1000), threads=8))
    assert results == [x * 2 for x in range(1000)]


def test_at_most_threads_items_in_flight_and_buffer_bounded() -> None:
    started = 0
    lock = threading.Lock()

    def work(item: int) -> int:
        nonlocal started
        with lock:
            started += 1
        return item

    pool = WorkerPool(work, range(10_000), threads=4)
    iterator = iter(pool)
    next(iterator)
    time.sleep(0.05)  # let the workers run ahead as far as they can
    # 4 threads, a queue of 8, plus one item each thread holds while blocked on a full queue
    assert started <= 1 + 8 + 4
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
