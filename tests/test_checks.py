"""The publish checks' pure half: verdicts from measurements (no I/O), their settings, and the
`checks` document read back."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest

from connector.checks.document import read_checks
from connector.checks.verdicts import Absent, CheckResult, DayChecks, Measurements, judge
from connector.config import CHECK_NAMES, ChecksSettings, parse_config
from connector.errors import ConfigError, OutputError

PREVIOUS = date(2026, 3, 1)
DEFAULTS = ChecksSettings()

# A day that passes every check against a previous day of 100 models, 1000 rows and versions.
CLEAN = Measurements(
    rows=1000,
    targets=100,
    previous_day=PREVIOUS,
    previous_rows=1000,
    previous_models=100,
    versions_in_both=1000,
    counts_known_before=1000,
)


def result(measured: Measurements, name: str, settings: ChecksSettings = DEFAULTS) -> CheckResult:
    return next(r for r in judge(measured, settings) if r.name == name)


def absent(models: int) -> Absent:
    return Absent(models, tuple(f"acme/m{i}" for i in range(min(models, 10))))


def test_a_clean_day_passes_every_check_in_order() -> None:
    results = judge(CLEAN, DEFAULTS)
    assert [r.name for r in results] == list(CHECK_NAMES)
    assert {r.verdict for r in results} == {"pass"}
    assert not DayChecks(tuple(results), PREVIOUS).held


# (check, measurements just within the default threshold, just beyond it, value beyond)
THRESHOLDS: list[tuple[str, dict[str, Any], dict[str, Any], float]] = [
    ("coverage_config", {"dropped_by_config": absent(0)}, {"dropped_by_config": absent(1)}, 1),
    ("coverage_registry", {"not_listed": absent(5)}, {"not_listed": absent(6)}, 0.06),
    ("coverage_registry", {"without_rows": absent(5)}, {"without_rows": absent(6)}, 0.06),
    ("row_count", {"rows": 900}, {"rows": 899}, 0.101),
    ("counts_decreased", {"counts_decreased": 10}, {"counts_decreased": 11}, 0.011),
    ("counts_lost", {"counts_lost": 10}, {"counts_lost": 11}, 0.011),
    ("empty", {"rows": 1}, {"rows": 0}, 0),
    ("duplicates", {"duplicates": 0}, {"duplicates": 1}, 1),
]


@pytest.mark.parametrize(("name", "within", "beyond", "value"), THRESHOLDS)
def test_each_check_passes_at_its_threshold_and_fails_beyond(
    name: str, within: dict[str, Any], beyond: dict[str, Any], value: float
) -> None:
    assert result(dataclasses.replace(CLEAN, **within), name).verdict == "pass"
    failed = result(dataclasses.replace(CLEAN, **beyond), name)
    assert failed.verdict == "fail"
    assert failed.value == value
    assert DayChecks((failed,), PREVIOUS).held


@pytest.mark.parametrize(
    ("setting", "name", "measured"),
    [
        ({"coverage_config_max_models": 3}, "coverage_config", {"dropped_by_config": absent(3)}),
        ({"coverage_registry_max_share": 0.2}, "coverage_registry", {"not_listed": absent(20)}),
        ({"row_count_max_decrease": 0.5}, "row_count", {"rows": 500}),
        ({"counts_decreased_max_share": 0.1}, "counts_decreased", {"counts_decreased": 100}),
        ({"counts_lost_max_share": 0.1}, "counts_lost", {"counts_lost": 100}),
    ],
)
def test_a_configured_threshold_moves_the_line(
    setting: dict[str, Any], name: str, measured: dict[str, Any]
) -> None:
    day = dataclasses.replace(CLEAN, **measured)
    assert result(day, name).verdict == "fail"
    assert result(day, name, ChecksSettings(**setting)).verdict == "pass"


def test_a_switched_off_check_is_recorded_off_with_its_value_and_holds_nothing() -> None:
    day = dataclasses.replace(CLEAN, counts_decreased=500)
    settings = ChecksSettings(disabled=["counts_decreased"])
    off = result(day, "counts_decreased", settings)
    assert (off.verdict, off.value) == ("off", 0.5)
    assert not DayChecks(tuple(judge(day, settings)), PREVIOUS).held
    assert result(day, "counts_decreased").verdict == "fail"  # on by default


def test_the_first_day_checks_what_it_can() -> None:
    first = Measurements(rows=10, targets=2, duplicates=1)
    verdicts = {r.name: r.verdict for r in judge(first, DEFAULTS)}
    assert verdicts == {
        "coverage_config": "skipped",
        "coverage_registry": "skipped",
        "row_count": "skipped",
        "counts_decreased": "skipped",
        "counts_lost": "skipped",
        "empty": "pass",
        "duplicates": "fail",
    }
    # an empty first day replaces nothing: nothing to lose; a re-run that empties it does
    assert result(Measurements(rows=0, targets=0), "empty").verdict == "pass"
    rerun = result(Measurements(rows=0, targets=0, replaced_rows=7), "empty")
    assert rerun.verdict == "fail"
    assert rerun.detail == "0 row(s) from 0 target(s); 7 row(s) before"


def test_an_empty_day_after_an_empty_day_passes() -> None:
    empty = dataclasses.replace(CLEAN, rows=0, previous_rows=0, previous_models=0)
    assert result(empty, "empty").verdict == "pass"


def test_shares_are_judged_as_recorded() -> None:
    # 1/3 is recorded as 0.333333: the verdict is on that number, not on a longer one
    day = dataclasses.replace(CLEAN, versions_in_both=3, counts_decreased=1)
    decreased = result(day, "counts_decreased", ChecksSettings(counts_decreased_max_share=0.333333))
    assert (decreased.value, decreased.verdict) == (0.333333, "pass")
    assert decreased.describe() == "counts_decreased 33.33% <= 33.33%"


def test_results_describe_themselves_with_value_and_threshold() -> None:
    day = dataclasses.replace(
        CLEAN,
        dropped_by_config=Absent(2, ("acme/a", "acme/b"), ("acme",)),
        counts_decreased=31,
        decreased_examples=("acme/a@1.0: 10 -> 0",),
    )
    coverage = result(day, "coverage_config")
    assert coverage.describe() == "coverage_config 2 > 0"
    assert coverage.detail == (
        "2 of the 100 model(s) of 2026-03-01 are no longer asked for by the config: "
        "acme/a, acme/b; whole org(s): acme"
    )
    assert result(day, "counts_decreased").describe() == "counts_decreased 3.1% > 1%"
    assert (
        result(day, "empty").describe()
        == "empty: 1000 row(s) from 100 target(s); 1000 row(s) before"
    )


def test_the_coverage_split_names_both_reasons() -> None:
    day = dataclasses.replace(
        CLEAN, not_listed=Absent(1, ("acme/gone",)), without_rows=Absent(2, ("acme/x", "acme/y"))
    )
    registry = result(day, "coverage_registry")
    assert registry.value == 0.03
    assert "2 targeted but failed or without versions (acme/x, acme/y)" in registry.detail
    assert "1 no longer listed by the registry (acme/gone)" in registry.detail
    assert registry.examples == ("acme/x", "acme/y", "acme/gone")


def test_the_document_round_trips_through_the_reader() -> None:
    day = dataclasses.replace(CLEAN, rows=0)
    checks = DayChecks(tuple(judge(day, DEFAULTS)), PREVIOUS)
    document = checks.document()
    assert document["verdict"] == "held"
    assert document["previous_snapshot"] == "2026-03-01"
    back = read_checks({"checks": document}, "a manifest")
    assert back is not None
    assert [r.describe() for r in back.failing] == [r.describe() for r in checks.failing]
    assert [r.name for r in back.failing] == ["row_count", "empty"]


@pytest.mark.parametrize(
    ("checks", "problem"),
    [
        ("held", "the checks in m.json is not a valid ChecksRecord"),
        ({"verdict": "held", "results": "many"}, "results: Input should be a valid list"),
        ({"verdict": "held", "results": [{"name": "x"}]}, "results.0.verdict: Field required"),
        ({"verdict": "x" * 100}, "verdict: String should have at most 64 characters"),
        ({"verdict": "held", "results": [{}] * 65}, "List should have at most 64 items"),
    ],
)
def test_a_document_that_is_not_one_is_refused_by_name(checks: Any, problem: str) -> None:
    with pytest.raises(OutputError, match=r"m\.json") as caught:
        read_checks({"checks": checks}, "m.json")
    assert problem in str(caught.value)


def test_a_document_without_checks_has_none() -> None:
    assert read_checks({"run_id": "old"}, "m.json") is None
    assert read_checks(None, "m.json") is None


def _config(checks: Any) -> dict[str, Any]:
    return {
        "registry": {"base_url": "https://r.example", "token": "t"},
        "orgs": [{"name": "acme", "models": ["a"]}],
        "output": {"uri": "/tmp/x", "checks": checks},
    }


def test_checks_settings_default_to_the_issue_thresholds() -> None:
    checks = parse_config(_config({}), {}).output.checks
    assert checks == ChecksSettings()
    assert (
        checks.coverage_config_max_models,
        checks.coverage_registry_max_share,
        checks.row_count_max_decrease,
        checks.counts_decreased_max_share,
        checks.counts_lost_max_share,
        checks.disabled,
    ) == (0, 0.05, 0.10, 0.01, 0.01, [])


def test_checks_settings_problems_are_reported_with_their_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            _config(
                {
                    "disabled": ["counts_decreased", "speed"],
                    "row_count_max_decrease": 1.5,
                    "counts_lost_max_share": True,
                    "coverage_config_max_models": -1,
                }
            ),
            {},
        )
    problems = "\n".join(caught.value.problems)
    assert "output.checks.disabled[1]: Input should be 'coverage_config'" in problems
    assert "output.checks.row_count_max_decrease: Input should be less than or equal to 1" in (
        problems
    )
    assert "output.checks.counts_lost_max_share: expected a number, got a boolean" in problems
    assert "output.checks.coverage_config_max_models: Input should be greater than or equal" in (
        problems
    )


def test_a_check_disabled_twice_is_listed_once() -> None:
    settings = ChecksSettings(disabled=["empty", "empty"])
    assert settings.disabled == ["empty"]
