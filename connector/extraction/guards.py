"""Guards that keep a mistaken run from overwriting good history.

Both are pure functions of what the run knows, so the single-run extractor and the sharded
publish apply exactly the same rules:

- `check_snapshot_date`: a snapshot stands for the UTC day its counts were observed. A run may
  publish under that day, or under the day before (a run started just after midnight, or a
  retry a few hours late); any other date needs `allow_backdate`, and a day that has not begun
  yet is refused always, because counts cannot be observed before they exist.
- `missing_targets`: a run whose targets leave out a model the existing partition holds would
  replace that partition with less data (half a config, a typo'd org list); it must say
  `replace` to do that on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta

from connector.errors import ConfigError

# Targets named in a refusal message; the rest are counted.
_NAMED_TARGETS = 5


class SnapshotDateError(ConfigError):
    """The snapshot date is outside the window a run may publish without `allow_backdate`."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


def allowed_dates(observed_at: datetime) -> tuple[date, date]:
    """The dates a run observing at `observed_at` (timezone-aware) may publish under without
    `allow_backdate`: the UTC day of the observation and the day before."""
    if observed_at.tzinfo is None:
        raise ValueError("observed_at must be timezone-aware")
    today = observed_at.astimezone(UTC).date()
    return today - timedelta(days=1), today


def check_snapshot_date(day: date, observed_at: datetime, *, allow_backdate: bool) -> bool:
    """Refuse a snapshot date the run cannot stand for; return whether it is backdated.

    Raises SnapshotDateError (exit code 2) for a day after the observation's UTC day, and for a
    day before yesterday (UTC) unless `allow_backdate`.
    """
    yesterday, today = allowed_dates(observed_at)
    observed = observed_at.astimezone(UTC).isoformat(timespec="seconds")
    if day > today:
        raise SnapshotDateError(
            f"--date {day.isoformat()} is in the future: this run observes the counts of "
            f"{today.isoformat()} (UTC, at {observed}); a snapshot cannot stand for a day that "
            "has not begun"
        )
    if day >= yesterday:
        return False
    if not allow_backdate:
        raise SnapshotDateError(
            f"--date {day.isoformat()} is before yesterday: this run observes the counts of "
            f"{today.isoformat()} (UTC, at {observed}) and would publish them as "
            f"{day.isoformat()}'s, replacing that day's history; give --allow-backdate "
            "(allow_backdate=True) if that is really what you want"
        )
    return True


def missing_targets(
    existing: Iterable[tuple[str, str]],
    targets: Iterable[tuple[str, str]],
    covered: Callable[[str, str], bool] | None = None,
) -> list[tuple[str, str]]:
    """The (org, model) pairs the existing partition holds that the run does not target, sorted.

    `covered` (a config's `covers`) also spares a model a pattern would take if the registry
    listed it: one deleted from the registry since is not half a config, and a failed
    listing is refused by the publish guard instead."""
    missing = set(existing) - set(targets)
    return sorted(t for t in missing if covered is None or not covered(*t))


def describe_missing(missing: list[tuple[str, str]], day: date) -> str:
    """The refusal message of the half-config guard: the first few targets and a count."""
    named = ", ".join(f"{org}/{model}" for org, model in missing[:_NAMED_TARGETS])
    more = len(missing) - _NAMED_TARGETS
    if more > 0:
        named += f" and {more} more"
    return (
        f"the published snapshot of {day.isoformat()} holds {len(missing)} model(s) this run "
        f"does not target ({named}); nothing was published so it stays as it was; give "
        "--replace (replace=True) to replace it with this run's targets only"
    )
