"""`MemoryBudget`: a bound on the memory that version lists being read and parsed take at once.

A 16 MiB body costs about ten times its size while it is parsed and flattened (Python objects
are large), so eight workers reading capped bodies together would need eight times that. Each
`listModelVersions` body therefore takes a share of one budget, sized from its length, before
it is read (from `Content-Length`) or right after (a body of unknown length), and gives it back
once its rows are in the writer. Waiters are served first come, first served; a body larger
than the whole budget waits until nothing else holds any and then proceeds alone, so nothing
ever waits for a share that cannot come. A share is taken in one step and never added to, so
no holder waits for another holder.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque

# Estimated peak memory per body byte while it is parsed and flattened: the body, its JSON
# objects and the rows built from them (measured by `benchmarks/bench_memory.py`).
MEMORY_PER_BODY_BYTE = 10


class BudgetAbortedError(Exception):
    """The run stopped while waiting for a share: nothing was taken."""


class Share:
    """Bytes held from a `MemoryBudget`; `release()` gives them back (once, from any thread)."""

    __slots__ = ("_budget", "_released", "amount")

    def __init__(self, budget: MemoryBudget, amount: int) -> None:
        self._budget = budget
        self.amount = amount
        self._released = False

    def release(self) -> None:
        """Give the bytes back; a second call does nothing."""
        self._budget._give_back(self)

    def __repr__(self) -> str:
        return f"Share({self.amount} bytes{', released' if self._released else ''})"


class MemoryBudget:
    """Thread-safe; `high_water` records the most bytes ever held at once."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a memory budget must be positive, got {limit}")
        self.limit = limit
        self.held = 0
        self.high_water = 0
        self._queue: deque[int] = deque()  # waiting tickets, first come first served
        self._tickets = itertools.count()
        self._condition = threading.Condition()
        self._aborted = False

    @property
    def waiting(self) -> int:
        """How many acquirers are waiting now."""
        with self._condition:
            return len(self._queue)

    def acquire(self, amount: int) -> Share:
        """Wait for `amount` bytes (all of the budget for a larger amount) and hold them;
        raises BudgetAbortedError if `abort()` is called first."""
        amount = max(0, amount)
        with self._condition:
            ticket = next(self._tickets)
            self._queue.append(ticket)
            try:
                self._condition.wait_for(lambda: self._aborted or self._fits(ticket, amount))
                if self._aborted:
                    raise BudgetAbortedError("the run stopped while waiting for memory")
            finally:
                self._queue.remove(ticket)
                self._condition.notify_all()  # the next in line may fit too
            return self._hold(amount)

    def try_acquire(self, amount: int) -> Share | None:
        """`amount` bytes held at once if they fit and nobody is waiting (first come, first
        served), else None and nothing held: the caller then waits in `acquire`."""
        amount = max(0, amount)
        with self._condition:
            if self._aborted or self._queue or not self._room(amount):
                return None
            return self._hold(amount)

    def _hold(self, amount: int) -> Share:
        self.held += amount
        self.high_water = max(self.high_water, self.held)
        return Share(self, amount)

    def _room(self, amount: int) -> bool:
        return self.held == 0 or self.held + amount <= self.limit

    def _fits(self, ticket: int, amount: int) -> bool:
        return self._queue[0] == ticket and self._room(amount)

    def abort(self) -> None:
        """The run stopped: every waiter (and every later acquirer) gives up."""
        with self._condition:
            self._aborted = True
            self._condition.notify_all()

    def _give_back(self, share: Share) -> None:
        with self._condition:
            if share._released:
                return
            share._released = True
            self.held -= share.amount
            self._condition.notify_all()
