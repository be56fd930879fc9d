"""Rendering a report: the aligned table, CSV and JSON that parse back, the self-contained HTML
page (checked statically, and drawn in headless Chromium), and atomic `-o` output."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from dataset_builders import V, daily_dataset, report_over

from connector.cli.report import report as report_command
from connector.errors import ConfigError, OutputError
from connector.reporting.analytics import REPORT_COLUMNS, Report, compute_report
from connector.reporting.cells import plain, plain_column
from connector.reporting.page import chart_data, palette
from connector.reporting.render import render, render_html, render_table, write_output

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NASTY = '<img src=x onerror="alert(1)">&amp;\'</script>'


def sample(by: str = "version") -> Report:
    """Three days, numbers of very different widths, a new, a disappeared and a hostile name."""
    return report_over(
        {
            "2024-01-01": [
                V("acme", "big", "1.0", 1_000_000),
                V("acme", "small", "0.1", 3),
                V("acme", "old", "0.9", 10),
                V("globex", NASTY, "1", 5, framework=NASTY),
            ],
            "2024-01-02": [V("acme", "big", "1.0", 1_100_000), V("acme", "small", "0.1", 4)],
            "2024-01-03": [
                V("acme", "big", "1.0", 1_234_567),
                V("acme", "small", "0.1", 5),
                V("acme", "small", "0.2", 12, "2024-01-02T09:00:00"),
                V("globex", NASTY, "1", 25, framework=NASTY),
            ],
        },
        days=2,
        by=by,
        top=None,
    )


def test_table_is_aligned_with_thousands_separators() -> None:
    text = render_table(sample())
    lines = text.splitlines()
    assert lines[0] == "Downloads gained by version, 2024-01-01 to 2024-01-03"
    assert lines[1] == "2 days, 3 snapshots; 234,601 downloads gained across 5 versions"
    body = lines[3:]
    table = body[: body.index("")]  # the column legend and the notes follow a blank line
    header, rule, *rows = table
    assert len(rows) == 5
    assert body[body.index("") + 1].startswith("baseline: the count a version's gain is measured")
    spans = [m.span() for m in re.finditer(r"-+", rule)]
    headers = [header[a:b].strip() for a, b in spans]
    numeric = {"downloads", "baseline", "gained", "per day", "share"}
    for line in rows:
        for (a, b), name in zip(spans, headers, strict=True):
            cell = line[a:b]
            if name in numeric and cell.strip():
                assert cell == cell.rjust(b - a) and not cell.endswith(" "), (name, line)
            elif cell.strip():
                assert not cell.startswith(" "), (name, line)
    big = next(line for line in rows if " big " in line)
    assert "1,234,567" in big and "234,567" in big and "117,283.5" in big and "100.0%" in big
    assert "<0.1%" in next(line for line in rows if " 0.1 " in line)
    old = next(line for line in rows if " old " in line)
    assert re.search(r"old\s+0\.9\s+pytorch\s+2023-01-01 00:00\s+-\s+10\s+0\s", old)
    assert 'globex  <img src=x onerror="alert(1)">&amp;\'<...  1  ' in text  # cut at 40
    assert text.count("note: ") == 1 and "in the start snapshot but not the end" in text


def test_csv_parses_back_with_pandas() -> None:
    result = sample()
    parsed = pd.read_csv(io.StringIO(render(result, "csv")), keep_default_na=False)
    assert list(parsed.columns) == REPORT_COLUMNS["version"]
    assert parsed["downloads_gained"].tolist() == result.table["downloads_gained"].tolist()
    assert parsed["is_new"].tolist() == result.table["is_new"].tolist()
    assert parsed["model"].tolist()[1] == NASTY
    assert set(parsed["start_snapshot"]) == {"2024-01-01"}
    assert parsed.loc[parsed["model"] == "old", "download_count"].tolist() == [""]


@pytest.mark.parametrize("by", ["version", "model", "org", "framework"])
def test_json_is_a_list_of_objects_with_the_documented_keys(by: str) -> None:
    objects = json.loads(render(sample(by), "json"))
    assert isinstance(objects, list) and objects
    for item in objects:
        assert {"download_count", "downloads_gained", "gained_per_day", "share_of_gained"} <= set(
            item
        )
        assert (item["start_snapshot"], item["end_snapshot"]) == ("2024-01-01", "2024-01-03")
        assert ("version" in item) == (by == "version")
        assert ("org" in item) == (by != "framework") and ("model" in item) == (
            by in ("model", "version")
        )
    first = objects[0]
    gained = {"version": 234_567, "model": 234_567, "org": 234_581, "framework": 234_581}[by]
    assert (first["downloads_gained"], first["gained_per_day"]) == (gained, gained / 2)
    if by == "version":
        old = next(item for item in objects if item["model"] == "old")
        assert old["download_count"] is None and old["disappeared"] is True
        assert objects[0]["created_at"] == "2023-01-01T00:00:00Z"


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="format must be one of"):
        render(sample(), "xml")


VOID_ELEMENTS = frozenset({"meta", "link", "br", "img", "input", "hr", "col", "source", "wbr"})


class _Structure(HTMLParser):
    """Collects what a self-contained, well-formed page must (not) contain."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster") and value != "data:,":
                self.urls.append(f"{tag} {name}={value}")
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"unbalanced </{tag}>")


def test_html_is_one_self_contained_well_formed_page() -> None:
    page = render_html(sample())
    assert page.startswith('<!DOCTYPE html>\n<html lang="en">')
    parser = _Structure()
    parser.feed(page)
    parser.close()
    assert parser.problems == [] and parser.stack == []
    assert parser.urls == []  # nothing to fetch: no src, no href but the data: favicon
    assert parser.tags.count("svg") == 1 and parser.tags.count("table") == 1
    assert "default-src 'none'" in page and "script-src 'sha256-" in page
    assert "@import" not in page and "url(" not in page
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]  # a name
    assert "<img" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp;&#x27;&lt;/script&gt;" in page
    data = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page)
    assert data is not None and "<" not in data.group(1)
    series = json.loads(data.group(1))["series"]
    assert [s["label"] for s in series][:2] == ["acme/big@1.0", f"globex/{NASTY}@1"]
    assert [p["gained"] for p in series[0]["points"]] == [100_000, 134_567]


def test_chart_shows_at_most_the_cap() -> None:
    data = chart_data(sample(), limit=2)
    assert len(data["series"]) == 2 and data["capped"] is True
    assert chart_data(sample())["capped"] is False


def page_data(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page)
    assert found is not None
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_a_single_interval_is_drawn_as_bars_and_several_as_lines(tmp_path: Path) -> None:
    daily_dataset(tmp_path / "two", "2024-01-01", 2)
    daily_dataset(tmp_path / "three", "2024-01-01", 3)
    two = chart_data(compute_report(tmp_path / "two", days=1))
    assert two["kind"] == "bars" and two["interval"] == "2024-01-01 to 2024-01-02"
    assert all(len(s["points"]) == 1 for s in two["series"])
    assert chart_data(compute_report(tmp_path / "three", days=2))["kind"] == "lines"
    assert page_data(render(compute_report(tmp_path / "two", days=1), "html"))["kind"] == "bars"
    # the script draws rect.bar for bars and a path.line per series otherwise
    script = render(compute_report(tmp_path / "two", days=1), "html")
    assert 'data.kind === "bars"' in script and '"rect", {class: "bar"' in script


def test_colours_never_repeat_and_dashed_series_have_dashed_swatches(tmp_path: Path) -> None:
    assert palette(2) == ["#4e79a7", "#f28e2b"]  # the classic ten first
    for count in (1, 11, 20, 60):
        colours = palette(count)
        assert len(colours) == count == len(set(colours))
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)
    daily_dataset(tmp_path, "2024-01-01", 3, models=14)
    data = chart_data(compute_report(tmp_path, days=2, top=None))
    colours = [s["color"] for s in data["series"]]
    assert len(colours) == 14 == len(set(colours))
    assert [s["dashed"] for s in data["series"]] == [False] * 10 + [True] * 4
    # the legend draws each swatch with its series' own dash pattern
    page = render(compute_report(tmp_path, days=2, top=None), "html")
    swatch = page[page.index("for (const s of series) {  // each swatch") :]
    assert '"stroke-dasharray": s.dashed ? DASH : "none"' in swatch


def test_columns_blank_in_every_row_are_hidden_in_the_human_formats(tmp_path: Path) -> None:
    daily_dataset(tmp_path, "2024-01-01", 3)  # nothing new, decreased or from first observation
    result = compute_report(tmp_path, days=2, by="version")
    header = render(result, "table").splitlines()[3]
    assert "downloads" in header and "baseline" in header
    for blank in ("new", "decreased", "disappeared", "first observed", "from first obs."):
        assert f" {blank} " not in f" {header} ", blank
    assert "baseline: the count a version's gain is measured from" in render(result, "table")
    assert "from first obs.:" not in render(result, "table")  # its column is hidden
    csv_header = render(result, "csv").splitlines()[0].split(",")
    assert {"is_new", "count_decreased", "first_observed"} <= set(csv_header)  # all kept
    page = render(result, "html")
    assert 'title="is_new"' not in page and 'title="baseline_count"' in page
    assert '<p class="column-notes">baseline: the count' in page


def test_the_legend_explains_from_first_observation_when_shown() -> None:
    snapshots = {
        "2024-01-01": [V("acme", "a", "1.0", 10)],
        # 0.5 is older than the window but was not captured at the start
        "2024-01-02": [V("acme", "a", "1.0", 20), V("acme", "a", "0.5", 7, "2023-01-01T00:00")],
    }
    by_version = render_table(report_over(snapshots, by="version"))
    assert "from first obs." in by_version.splitlines()[3]
    assert "from first obs.: the version was older than the window" in by_version
    by_model = render_table(report_over(snapshots, by="model"))
    assert "from first obs." in by_model.splitlines()[3]
    assert "from first obs.: how many of the group's versions" in by_model


def test_an_empty_report_still_renders(tmp_path: Path) -> None:
    result = report_over(
        {"2024-01-01": [V("a", "x", "1", None)], "2024-01-02": [V("a", "x", "1", None)]}
    )
    assert "(no rows)" in render(result, "table")
    assert json.loads(render(result, "json")) == []
    assert render(result, "csv").startswith("org,model,download_count")
    assert '"series":[]' in render(result, "html")


def test_write_output_is_atomic_and_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_output(target, "first\n")
    assert target.read_text() == "first\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    os.chmod(target, 0o600)
    write_output(target, "second\n")
    assert target.read_text() == "second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["report.html"]  # no temp file left behind
    with pytest.raises(OutputError, match="cannot write"):
        write_output(tmp_path / "missing" / "report.html", "x")


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "html"])
def test_output_option_writes_the_file(tmp_path: Path, fmt: str) -> None:
    daily_dataset(tmp_path / "data", "2024-01-01", 4)
    target = tmp_path / f"report.{fmt}"
    result = CliRunner().invoke(
        report_command,
        ["--data", str(tmp_path / "data"), "--days", "3", "--format", fmt, "-o", str(target)],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"wrote {target}" in result.stderr
    text = target.read_text(encoding="utf-8")
    assert text == render(compute_report(tmp_path / "data", days=3), fmt)
    assert sorted(os.listdir(tmp_path)) == sorted(["data", target.name])


def _chromium(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1100",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


@pytest.mark.slow
@pytest.mark.browser
def test_html_chart_is_drawn_in_headless_chromium(tmp_path: Path) -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "headless Chromium not found: apt-get install chromium chromium-driver"
            " to run the HTML render test"
        )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    daily_dataset(tmp_path / "data", "2024-01-01", 8, models=5)
    page = tmp_path / "report.html"
    page.write_text(
        render(compute_report(tmp_path / "data", days=7, top=4), "html"), encoding="utf-8"
    )

    driver = _chromium(tmp_path / "profile")
    try:
        driver.get(page.as_uri())
        chart = driver.find_element(By.ID, "chart")
        WebDriverWait(driver, 10).until(lambda _: chart.get_attribute("data-points"))
        assert chart.get_attribute("data-series") == "4"
        assert chart.get_attribute("data-points") == str(4 * 7)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart g.series path.line")) == 4
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart circle.point")) == 4 * 7
        paths = [p.get_attribute("d") for p in driver.find_elements(By.CSS_SELECTOR, "path.line")]
        assert all(d is not None and d.count("L") == 6 for d in paths)
        legend = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#legend li")]
        assert legend == ["acme/model-4", "acme/model-3", "acme/model-2", "acme/model-1"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "table tbody tr")) == 4
        if os.environ.get("REPORT_SCREENSHOT"):
            driver.save_screenshot(os.environ["REPORT_SCREENSHOT"])
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
    finally:
        driver.quit()


@pytest.mark.slow
@pytest.mark.browser
def test_html_chart_draws_bars_for_one_interval_and_distinct_dashed_swatches(
    tmp_path: Path,
) -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "headless Chromium not found: apt-get install chromium chromium-driver"
            " to run the HTML render test"
        )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    daily_dataset(tmp_path / "two", "2024-01-01", 2, models=3)
    daily_dataset(tmp_path / "many", "2024-01-01", 3, models=14)
    pages = {}
    for name, days in (("two", 1), ("many", 2)):
        pages[name] = tmp_path / f"{name}.html"
        result = compute_report(tmp_path / name, days=days, top=None)
        pages[name].write_text(render(result, "html"), encoding="utf-8")

    driver = _chromium(tmp_path / "profile")
    try:
        driver.get(pages["two"].as_uri())
        chart = driver.find_element(By.ID, "chart")
        WebDriverWait(driver, 10).until(lambda _: chart.get_attribute("data-points"))
        assert chart.get_attribute("data-kind") == "bars"
        bars = driver.find_elements(By.CSS_SELECTOR, "#chart rect.bar")
        assert len(bars) == 3 and not driver.find_elements(By.CSS_SELECTOR, "#chart path.line")
        heights = [float(bar.get_attribute("height") or 0) for bar in bars]
        assert heights == sorted(heights, reverse=True) and heights[-1] > 0  # 300, 200, 100
        assert len(driver.find_elements(By.CSS_SELECTOR, "#legend svg.swatch rect")) == 3

        driver.get(pages["many"].as_uri())
        chart = driver.find_element(By.ID, "chart")
        WebDriverWait(driver, 10).until(lambda _: chart.get_attribute("data-points"))
        assert chart.get_attribute("data-kind") == "lines"
        lines = driver.find_elements(By.CSS_SELECTOR, "#chart path.line")
        strokes = [line.get_attribute("stroke") for line in lines]
        assert len(strokes) == 14 == len(set(strokes))
        dashes = [line.get_attribute("stroke-dasharray") for line in lines]
        swatches = driver.find_elements(By.CSS_SELECTOR, "#legend svg.swatch line")
        assert [s.get_attribute("stroke-dasharray") for s in swatches] == dashes
        assert [s.get_attribute("stroke") for s in swatches] == strokes
        assert dashes.count("none") == 10 and dashes[10:] == ["6 4"] * 4
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
    finally:
        driver.quit()


def test_datetime_columns_convert_in_bulk_exactly_as_one_value_at_a_time() -> None:
    """The report's datetime columns are converted with numpy (a report by version can have a
    row per version of the registry); each value must come out as `plain` writes it alone."""
    aware = pd.Series(
        pd.to_datetime(
            [
                "2024-05-01T00:00:00Z",
                "2024-05-01T12:34:56.5Z",
                "2024-05-01T12:34:56.000001Z",
                "1969-12-31T23:59:59.25Z",
                None,
                "2024-05-01T12:34:56.000000789Z",
            ],
            utc=True,
            format="ISO8601",
        )
    )
    naive = pd.Series(pd.to_datetime(["2024-05-01", None, "1960-01-02"]))
    for column in (
        aware,
        aware.dt.tz_convert("Europe/Paris"),
        aware.astype("datetime64[us, UTC]"),
        naive,
    ):
        assert plain_column(column) == [plain(value) for value in column.astype(object)]
    assert plain_column(aware)[:2] == ["2024-05-01T00:00:00Z", "2024-05-01T12:34:56.500000Z"]
