"""`extract --processes P`: stage the P parts of a run in P local processes.

One process keeps one core busy at most (parsing and flattening JSON holds the GIL), so P
processes each stage part K of P through the same code as `extract --shard K/P`
(`stage.stage_part`), and the parent, which holds the output lock for the whole run, publishes
the P parts as every run publishes its parts (`publish.publish_parts`). The concurrency and the
rate limit are split across the children so they stay limits for the whole run. Children send
their log records and one tick (ok or failed) per finished target over a multiprocessing queue:
one progress bar (with ok/failed counters), one log, one summary.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from connector.config import Config
from connector.extraction.context import RunContext
from connector.extraction.interrupt import Interrupt
from connector.extraction.outcome import Ending, Stop, Tally, now, summarize
from connector.extraction.progress import RunProgress
from connector.extraction.stage import stage_part
from connector.extraction.summary import RunSummary
from connector.loggers import get_logger

log = get_logger(__name__)

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


def stage_in_processes(
    context: RunContext,
    config: Config,
    processes: int,
    *,
    interrupt: Interrupt,
    show: bool,
) -> list[RunSummary]:
    """Stage parts 1..P of P in P child processes (the caller holds the output lock); returns
    their summaries in order (a child that died has a summary saying so). A stop requested
    through `interrupt` (the CLI's SIGINT/SIGTERM) is passed on to every child, which stops as
    a one-process run does."""
    mp_context = _start_method(context.store.is_local)
    log.debug(
        "running %d shard processes, start method %s",
        processes,
        mp_context.get_start_method(),
        extra={"event": "shard_processes"},
    )
    queue = mp_context.Queue()
    stop = mp_context.Event()  # set on a stop request: every child stops its own run
    level = logging.getLogger("connector").getEffectiveLevel()
    total = None if config.discovers() else len(config.targets())  # discovery: known later
    with ProcessPoolExecutor(
        processes,
        mp_context=mp_context,
        initializer=_init_child,
        initargs=(queue, stop, level, _storage_environment()),
    ) as pool:
        # Submitting forks the children (with "fork"): before this process starts any thread.
        futures = [
            pool.submit(_child, context, child, (index, processes), show)
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
    return [_numbered(context, result, i, processes) for i, result in enumerate(results, 1)]


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
    context: RunContext, result: RunSummary | str, index: int, processes: int
) -> RunSummary:
    """A child's summary, or one that says why it has none (built like every summary)."""
    if isinstance(result, RunSummary):
        return result
    stop = Stop(message=result, bug=True)
    return summarize(context, Tally(), Ending(now(), stopped=stop, shard=f"{index}/{processes}"))


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


def _child(context: RunContext, config: Config, shard: tuple[int, int], show: bool) -> RunSummary:
    tick = _tick if show else None
    return stage_part(
        context, config, shard, interrupt=_CHILD["interrupt"], progress=False, tick=tick
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
