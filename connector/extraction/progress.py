"""What a person watching a run sees: the progress bar and one line per rejected org.

The bar (on a terminal only) counts finished targets and shows how many succeeded and failed.
Log lines are written through `tqdm.write` (see `connector.logs`), so they never split it.

A rejected token fails every model of its org: one ERROR line per model would bury the rest of
the run, so those failures are told once per org at the end, with a count (each one is still in
the summary, the record and the manifest, and in the log at DEBUG level).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from types import TracebackType

from tqdm import tqdm

from connector.errors import ErrorType, OrgStoppedError, TargetFailure
from connector.loggers import get_logger
from connector.redaction import redact

log = get_logger("connector.extraction.run")


class RunProgress:
    """A progress bar over the run's targets with ok/failed counters; draws nothing when off."""

    def __init__(self, total: int | None, *, enabled: bool) -> None:
        self.ok = 0
        self.failed = 0
        self._bar = tqdm(total=total, disable=not enabled, unit="model", file=sys.stderr)

    def advance(self, *, ok: bool) -> None:
        """One more target finished."""
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        self._bar.set_postfix_str(f"ok={self.ok} failed={self.failed}", refresh=False)
        self._bar.update(1)

    def fill(self) -> None:
        """Count what is left as done (targets a stopped run never reached)."""
        if self._bar.total is not None:
            self._bar.update(self._bar.total - self._bar.n)

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.close()


class RejectedOrgs:
    """Gathers the failures that a stopped org (token rejected, out of credits) caused, to
    report them once per org."""

    def __init__(self, blocked: Callable[[str], OrgStoppedError | None]) -> None:
        self._blocked = blocked
        self._counts: Counter[str] = Counter()

    def absorb(self, failure: TargetFailure, blocks_org: bool) -> bool:
        """True when `failure` is a rejected org's 401/403 (`blocks_org`) or a model skipped
        because of it; the caller then logs it at DEBUG only."""
        if not (blocks_org or failure.error_type is ErrorType.SKIPPED):
            return False
        if self._blocked(failure.org) is None:
            return False
        self._counts[failure.org] += 1
        return True

    def log(self, secrets: list[str]) -> None:
        """One ERROR line per rejected org: what the registry said and how many models failed."""
        for org, count in sorted(self._counts.items()):
            blocker = self._blocked(org)
            if blocker is None:  # pragma: no cover - absorb() only counts blocked orgs
                continue
            why = (
                "out of credits"
                if blocker.error_type is ErrorType.INSUFFICIENT_CREDITS
                else "token rejected"
            )
            log.error(
                "org %s: %s (HTTP %s %s: %s); %d model(s) failed or not attempted",
                org,
                why,
                blocker.status,
                blocker.error_type,
                redact(blocker.detail, secrets),
                count,
                extra={"event": "org_rejected", "org": org, "status": blocker.status},
            )
