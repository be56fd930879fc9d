"""`extract --processes P`: P local shard processes, then one publish.

One process keeps one core busy at most (parsing and flattening JSON holds the GIL), so P
processes each run shard K of P through the same code as `extract --shard K/P`, and this
parent, which holds the output lock for the whole run, publishes the P parts exactly as
`connector publish --shards P` would. The concurrency and the rate limit are split across the
children so they stay limits for the whole run. Children send their log records and one tick
(ok or failed) per finished target over a multiprocessing queue: one progress bar (with
ok/failed counters), one log, one summary.
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import multiprocessing
import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import date
from typing import Any

from connector.config import Config
from connector.dataset.lock import open_run_lock
from connector.dataset.storage import locate_output
from connector.dataset.writer import recover
from connector.errors import RunOutcome, combine_outcomes
from connector.extraction.fanout import extract_shard
from connector.extraction.interrupt import Interrupt
from connector.extraction.outcome import Stop, stopped_by_signal
from connector.extraction.progress import RunProgress
from connector.extraction.publish import publish_locked
from connector.extraction.summary import RunSummary

log = logging.getLogger(__name__)

_CHILD: dict[str, Any] = {}  # in a child: its "queue" to the parent and its "interrupt"


def cpu_count() -> int:
    """The CPUs this process may run on (`--processes auto`)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split_limits(config: Config, processes: int) -> list[Config]:
    """One config per child: the concurrency shared out (at least 1 each), the requests-per-
    second limit divided, so the run as a whole keeps both limits."""
    registry = config.registry
    base, extra = divmod(registry.concurrency, processes)
    rate = registry.max_requests_per_second
    configs = []
    for index in range(processes):
        update: dict[str, Any] = {"concurrency": max(1, base + (1 if index < extra else 0))}
        if rate is not None:
            update["max_requests_per_second"] = rate / processes
        configs.append(config.model_copy(update={"registry": registry.model_copy(update=update)}))
    return configs


def extract_processes(
    config: Config,
    day: date,
    uri: str,
    processes: int,
    min_success_ratio: float | None,
    progress: bool | None,
    *,
    backdated: bool = False,
    replace: bool = False,
    interrupt: Interrupt | None = None,
) -> RunSummary:
    """Run `processes` shards in child processes under one output lock, then publish once.

    A stop requested through `interrupt` (the CLI's SIGINT/SIGTERM) is passed on to every child,
    which stops as a one-process run does; nothing is published.
    """
    started = time.monotonic()
    processes = max(1, min(processes, config.registry.concurrency))
    location = locate_output(uri, config.output.storage_mapping())
    run_id = uuid.uuid4().hex
    show = sys.stderr.isatty() if progress is None else progress
    with open_run_lock(location, run_id) as lock:
        for action in recover(location):
            log.warning("%s", action, extra={"event": "staging_recovered"})
        own_interrupt = interrupt is None
        interrupt = interrupt or Interrupt()
        try:
            children = _run_children(
                config, day, uri, processes, show, backdated, interrupt, fork=location.is_local
            )
        finally:
            if own_interrupt:
                interrupt.close()
        failed = [child for child in children if child.staged is None]
        if failed or interrupt.requested:
            stop = stopped_by_signal(interrupt) if interrupt.requested else None
            return _aborted(children, failed, run_id, day, uri, started, stop)
        return publish_locked(
            config,
            day,
            processes,
            location,
            run_id,
            min_success_ratio,
            started,
            replace=replace,
            check_lock=lock.check,
        )


def _run_children(
    config: Config,
    day: date,
    uri: str,
    processes: int,
    show: bool,
    backdated: bool,
    interrupt: Interrupt,
    *,
    fork: bool = True,
) -> list[RunSummary]:
    context = _start_method(fork)
    log.debug(
        "running %d shard processes, start method %s",
        processes,
        context.get_start_method(),
        extra={"event": "shard_processes"},
    )
    queue = context.Queue()
    stop = context.Event()  # set on a stop request: every child stops its own run
    level = logging.getLogger("connector").getEffectiveLevel()
    total = None if config.discovers() else len(config.targets())  # discovery: known later
    with ProcessPoolExecutor(
        processes,
        mp_context=context,
        initializer=_init_child,
        initargs=(queue, stop, level, _storage_environment()),
    ) as pool:
        # Submitting forks the children (with "fork"): before this process starts any thread.
        futures = [
            pool.submit(_child, child, day, uri, (index, processes), show, config, backdated)
            for index, child in enumerate(split_limits(config, processes), start=1)
        ]
        with RunProgress(total, enabled=show) as bar:
            pump = threading.Thread(target=_pump, args=(queue, bar), name="shard-log", daemon=True)
            pump.start()
            try:
                with interrupt.watch(stop.set):
                    results = [_result(f, index) for index, f in enumerate(futures, 1)]
                pool.shutdown(wait=True)  # joined: every child's queued item is in the pipe
            finally:
                queue.put(None)
                pump.join()
            bar.fill()
    return [_numbered(result, i, processes, day, uri) for i, result in enumerate(results, 1)]


def _start_method(fork: bool = True) -> multiprocessing.context.BaseContext:
    """ "fork" when this process runs no other thread: the children start at once, with the
    connector already imported (a fresh interpreter takes seconds to import pandas and
    pyarrow, as long as the whole run on a small registry). With other threads running (an
    orchestrator's worker), forking could copy a lock some thread holds, so "forkserver":
    one clean process imports the connector once and forks the children from there. The same
    when `fork` is False: an output on object storage has started the AWS SDK, whose own
    threads Python cannot see."""
    if fork and sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _result(future: Any, index: int) -> RunSummary | str:
    """A child's summary, or why it has none (it died: killed, out of memory, a crash)."""
    try:
        result: RunSummary = future.result()
    except BrokenProcessPool as exc:
        return f"shard process {index} died: {exc}"
    return result


def _numbered(
    result: RunSummary | str, index: int, processes: int, day: date, uri: str
) -> RunSummary:
    if isinstance(result, RunSummary):
        return result
    return RunSummary(
        run_id="",
        snapshot_date=day.isoformat(),
        output_uri=uri,
        started_at="",
        shard=f"{index}/{processes}",
        message=result,
        run_outcome=RunOutcome(internal_error=True),
    )


def _storage_environment() -> dict[str, str]:
    """The AWS SDK's variables as this run sees them (endpoint, region, credential chain)."""
    return {name: value for name, value in os.environ.items() if name.startswith("AWS_")}


def _init_child(queue: Any, stop: Any, level: int, storage_env: dict[str, str]) -> None:
    """In each child: send the connector's log records to the parent, which prints them, and
    stop the shard's run when the parent says so (`stop`) or on SIGTERM. Ctrl-C reaches the
    whole process group: the children leave it to the parent, which stops them all once.

    A forkserver outlives a run and keeps the environment it started with, so the children
    take the AWS variables of this run from the parent (over the pool's own pipe, never a log):
    they reach the same object store with the same credentials."""
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(storage_env)
    interrupt = Interrupt()
    _CHILD["queue"], _CHILD["interrupt"] = queue, interrupt
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, _: interrupt.request(signum))

    def relay() -> None:
        stop.wait()
        interrupt.request()

    threading.Thread(target=relay, name="stop-relay", daemon=True).start()
    logger = logging.getLogger("connector")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(logging.handlers.QueueHandler(queue))
    logger.setLevel(level)
    logger.propagate = False


def _tick(ok: bool) -> None:
    _CHILD["queue"].put(ok)


def _child(
    config: Config,
    day: date,
    uri: str,
    shard: tuple[int, int],
    show: bool,
    stamp: Config,
    backdated: bool,
) -> RunSummary:
    tick = _tick if show else None
    return extract_shard(
        config,
        day,
        uri,
        shard,
        tick=tick,
        fingerprint_of=stamp,
        backdated=backdated,
        interrupt=_CHILD["interrupt"],
    )


def _pump(queue: Any, bar: RunProgress) -> None:
    """In the parent: advance the bar (ok/failed per target) and hand each child's log record
    to the same logger."""
    while True:
        item = queue.get()
        if item is None:
            return
        if isinstance(item, bool):
            bar.advance(ok=item)
        else:
            logging.getLogger(item.name).handle(item)


def _aborted(
    children: list[RunSummary],
    failed: list[RunSummary],
    run_id: str,
    day: date,
    uri: str,
    started: float,
    stop: Stop | None = None,
) -> RunSummary:
    """A child could not stage its shard, or the run was stopped: publish nothing and say which
    and why. The exit code comes from the children's outcomes together, and the stop's
    (`errors.decide_exit_code`): the most serious."""
    requests: dict[str, int] = {}
    operations: dict[str, int] = {}
    for child in children:
        _add_counts(requests, child.requests)
        _add_counts(operations, child.requests_by_operation)
    summary = RunSummary(
        run_id=run_id,
        snapshot_date=day.isoformat(),
        output_uri=uri,
        started_at=min((c.started_at for c in children if c.started_at), default=""),
        elapsed_seconds=round(time.monotonic() - started, 3),
        targets_attempted=sum(child.targets_attempted for child in children),
        targets_succeeded=sum(child.targets_succeeded for child in children),
        requests=dict(sorted(requests.items())),
        requests_by_operation=dict(sorted(operations.items())),
        failures=tuple(
            sorted(
                (failure for child in children for failure in child.failures),
                key=lambda f: (f.org, f.model or ""),
            )
        ),
        shards=len(children),
        run_outcome=combine_outcomes(
            [
                *(child.run_outcome for child in children),
                RunOutcome(
                    terminated=stop is not None and stop.terminated,
                    interrupted=stop is not None and not stop.terminated,
                ),
            ]
        ),
    )
    if stop is not None:
        return dataclasses.replace(summary, message=stop.message)
    reasons = "; ".join(f"shard {c.shard}: {c.message or c.exit_code.name.lower()}" for c in failed)
    return dataclasses.replace(summary, message=f"nothing was published: {reasons}")


def _add_counts(total: dict[str, int], more: dict[str, int]) -> None:
    for key, number in more.items():
        total[key] = total.get(key, 0) + int(number)
