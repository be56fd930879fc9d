"""Turn a computed report into text: a terminal table, CSV, JSON or one self-contained HTML page.

Every format starts from the same plain cells (`records`), so they cannot disagree: dates as
`YYYY-MM-DD`, timestamps as ISO 8601 in UTC, unknown values as null (empty in CSV, `-` in the
table). The HTML page makes no network request at all: its style, its script and the chart's data
are inline, and a Content-Security-Policy with the hashes of exactly that style and script keeps
anything else from loading or running. The chart (downloads gained per day, per group) is drawn
by the inline script into an inline SVG, from the data embedded as JSON.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import math
import os
from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd

from connector.atomic import write_atomic
from connector.errors import ConfigError, OutputError
from connector.reporting.analytics import Report

FORMATS = ("table", "csv", "json", "html")
CHART_MAX_SERIES = 20  # more lines than this are unreadable; the table still lists every group

# Shorter headers for the human formats; CSV and JSON keep the column names.
LABELS = {
    "download_count": "downloads",
    "downloads_gained": "gained",
    "gained_per_day": "per day",
    "share_of_gained": "share",
    "baseline_count": "baseline",
    "created_at": "created",
    "is_new": "new",
    "counted_from_first_observation": "from first obs.",
    "first_observed": "first observed",
    "count_decreased": "decreased",
    "disappeared": "disappeared",
    "new_versions": "new",
    "new_version_names": "new versions",
    "versions_from_first_observation": "from first obs.",
    "versions_count_decreased": "decreased",
    "versions_disappeared": "disappeared",
}
_HIDDEN = {"start_snapshot", "end_snapshot"}  # constant per report: shown in the title instead
_TEXT_WIDTH = 40
_NUM = ' class="num"'

_STYLE = """
:root { color-scheme: light; color: #1f2328; background: #fff;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
.summary { color: #57606a; margin: 0 0 1rem; }
.notes { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px;
  padding: .5rem .75rem .5rem 1.75rem; }
figure { margin: 0; }
#chart { display: block; width: 100%; height: auto; }
#chart text { font-size: 12px; fill: #57606a; }
#chart .grid { stroke: #d0d7de; stroke-width: 1; }
#chart .line { fill: none; stroke-width: 2; }
#legend { list-style: none; padding: 0; margin: .5rem 0; display: flex; flex-wrap: wrap;
  gap: .25rem 1.25rem; font-size: .9rem; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: .4rem; vertical-align: middle; }
#chart-note { color: #57606a; font-size: .9rem; margin: 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid #d0d7de; text-align: left;
  white-space: nowrap; }
th { background: #f6f8fa; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #f6f8fa; }
"""

# Draws the chart from the embedded JSON; DOM APIs only (textContent, never innerHTML), so a
# label cannot inject markup. The SVG records what it drew in data-series / data-points.
_SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const svg = document.getElementById("chart");
  const legend = document.getElementById("legend");
  const note = document.getElementById("chart-note");
  const NS = "http://www.w3.org/2000/svg";
  const W = 960, H = 360, M = {top: 16, right: 48, bottom: 40, left: 84};
  const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const fmt = new Intl.NumberFormat("en-US", {maximumFractionDigits: 1});
  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    parent.appendChild(node);
    return node;
  }
  function niceStep(raw) {
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / power;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
  }
  const series = data.series;
  const dates = [...new Set(series.flatMap(s => s.points.map(p => p.date)))].sort();
  if (!series.length || !dates.length) {
    note.textContent = "Nothing to chart.";
    return;
  }
  const time = d => Date.parse(d + "T00:00:00Z");
  const t0 = time(dates[0]), t1 = time(dates[dates.length - 1]);
  const plotW = W - M.left - M.right, plotH = H - M.top - M.bottom;
  const x = d => M.left + (t1 === t0 ? plotW / 2 : (time(d) - t0) / (t1 - t0) * plotW);
  const peak = Math.max(...series.flatMap(s => s.points.map(p => p.perDay)));
  const step = niceStep(Math.max(peak, 5) / 5);
  const yMax = step * Math.max(1, Math.ceil(peak / step));
  const y = v => M.top + plotH - v / yMax * plotH;
  const axes = el("g", {class: "axes"}, svg);
  for (let v = 0; v <= yMax + step / 2; v += step) {
    el("line", {class: "grid", x1: M.left, x2: W - M.right, y1: y(v), y2: y(v)}, axes);
    el("text", {x: M.left - 8, y: y(v) + 4, "text-anchor": "end"}, axes).textContent =
      fmt.format(v);
  }
  const every = Math.ceil(dates.length / 10);
  dates.forEach((d, i) => {
    if (i % every !== 0) return;
    el("text", {x: x(d), y: H - M.bottom + 20, "text-anchor": "middle"}, axes).textContent = d;
  });
  const yLabel = `translate(18 ${M.top + plotH / 2}) rotate(-90)`;
  el("text", {"text-anchor": "middle", transform: yLabel}, axes).textContent =
    "downloads gained per day";
  let drawn = 0;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const group = el("g", {class: "series", "data-label": s.label}, svg);
    const path = s.points.map(
      (p, j) => `${j ? "L" : "M"}${x(p.date).toFixed(1)} ${y(p.perDay).toFixed(1)}`);
    el("path", {class: "line", d: path.join(" "), stroke: color,
                "stroke-dasharray": i < COLORS.length ? "none" : "6 4"}, group);
    for (const p of s.points) {
      const dot = el("circle",
                     {class: "point", cx: x(p.date), cy: y(p.perDay), r: 3.5, fill: color}, group);
      const over = p.days > 1 ? ` over ${p.days} days (${fmt.format(p.perDay)} per day)` : "";
      el("title", {}, dot).textContent =
        `${s.label}, ${p.date}: ${fmt.format(p.gained)} gained${over}`;
      drawn += 1;
    }
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.backgroundColor = color;
    item.append(swatch, s.label);
    legend.append(item);
  });
  if (data.capped) {
    note.textContent = `The chart shows the first ${series.length} rows of the table.`;
  }
  svg.setAttribute("data-series", String(series.length));
  svg.setAttribute("data-points", String(drawn));
})();
"""


def _plain(value: Any) -> Any:
    """One cell as a JSON-able Python value."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            return value.date().isoformat()
        return value.tz_convert("UTC").isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table's rows as plain dicts (the JSON output, and the source of every other format)."""
    return [
        {str(key): _plain(value) for key, value in row.items()}
        for row in table.to_dict(orient="records")
    ]


def render_json(result: Report) -> str:
    """A JSON list of objects, one per group."""
    return json.dumps(records(result.table), indent=2, ensure_ascii=False) + "\n"


def render_csv(result: Report) -> str:
    """CSV with a header row; booleans as true/false, unknown values empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(result.table.columns)
    for row in records(result.table):
        writer.writerow(
            "" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row.values()
        )
    return buffer.getvalue()


def _is_number_column(table: pd.DataFrame, column: str) -> bool:
    dtype = table[column].dtype
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _cell(column: str, value: Any, width: int | None) -> str:
    """One cell for people: thousands separators, percentages, yes for a set flag."""
    if value is None:
        return "" if column == "first_observed" else "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if column == "share_of_gained":
        return "<0.1%" if 0 < value < 0.0005 else f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value)
    if column == "created_at":
        text = text[:16].replace("T", " ")
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def _human_rows(
    result: Report, width: int | None = None
) -> tuple[list[str], list[bool], list[list[str]]]:
    """Visible columns, which are numeric, and the formatted cells (text cut at `width`)."""
    columns = [c for c in result.table.columns if c not in _HIDDEN]
    numeric = [_is_number_column(result.table, c) for c in columns]
    rows = [[_cell(c, row[c], width) for c in columns] for row in records(result.table)]
    return columns, numeric, rows


def _title(result: Report) -> str:
    return f"Downloads gained by {result.by}, {result.window.start} to {result.window.end}"


def _summary(result: Report) -> str:
    window = result.window
    groups = f"{result.total_groups:,} {result.by}{'' if result.total_groups == 1 else 's'}"
    shown = f"top {len(result.table):,} shown" if len(result.table) < result.total_groups else ""
    days = f"{window.days} day{'' if window.days == 1 else 's'}"
    return (
        f"{days}, {len(window.snapshots)} snapshots; "
        f"{result.total_gained:,} downloads gained across {groups}"
        + (f" ({shown})" if shown else "")
    )


def render_table(result: Report) -> str:
    """An aligned table for a terminal: numbers right-aligned, text left-aligned."""
    columns, numeric, rows = _human_rows(result, _TEXT_WIDTH)
    headers = [LABELS.get(c, c) for c in columns]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        parts = (
            cell.rjust(w) if right else cell.ljust(w)
            for cell, w, right in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(parts).rstrip()

    out = [_title(result), _summary(result), ""]
    out += [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    if not rows:
        out.append("(no rows)")
    out += [f"note: {note}" for note in result.notes]
    return "\n".join(out) + "\n"


def chart_data(result: Report, limit: int = CHART_MAX_SERIES) -> dict[str, Any]:
    """The chart's series (one per group, in table order), as embedded in the HTML page."""
    daily = result.daily
    labels = list(dict.fromkeys(daily["group"].tolist()))[:limit] if len(daily) else []
    series = []
    for label in labels:
        points = daily[daily["group"] == label]
        series.append(
            {
                "label": label,
                "points": [
                    {
                        "date": _plain(row.snapshot_date),
                        "days": int(row.days),
                        "gained": int(row.downloads_gained),
                        "perDay": float(row.gained_per_day),
                    }
                    for row in points.itertuples(index=False)
                ],
            }
        )
    return {"series": series, "capped": len(set(daily["group"])) > limit if len(daily) else False}


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _html_table(result: Report) -> str:
    columns, numeric, rows = _human_rows(result)
    head = "".join(
        f'<th scope="col" title="{html.escape(c)}"{_NUM if n else ""}>'
        f"{html.escape(LABELS.get(c, c))}</th>"
        for c, n in zip(columns, numeric, strict=True)
    )
    body = "\n".join(
        "<tr>"
        + "".join(
            f"<td{_NUM if n else ''}>{html.escape(cell)}</td>"
            for cell, n in zip(row, numeric, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def render_html(result: Report) -> str:
    """One self-contained HTML5 page: title, notes, the chart (drawn by inline script) and table."""
    style, script = _STYLE, _SCRIPT
    data = json.dumps(chart_data(result), ensure_ascii=True, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    policy = (
        f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)};"
        " img-src data:; base-uri 'none'; form-action 'none'"
    )
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in result.notes)
    title = html.escape(_title(result))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(policy, quote=False)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p class="summary">{html.escape(_summary(result))}</p>
{f'<ul class="notes">{notes}</ul>' if notes else ""}
<section>
<h2>Downloads gained per day</h2>
<figure>
<svg id="chart" role="img" aria-label="Downloads gained per day, one line per {result.by}"
 viewBox="0 0 960 360" preserveAspectRatio="xMidYMid meet"></svg>
<figcaption><ul id="legend"></ul><p id="chart-note"></p></figcaption>
</figure>
<noscript><p>The chart needs JavaScript; the table below has the same numbers.</p></noscript>
</section>
<section>
<h2>By {html.escape(result.by)}</h2>
{_html_table(result)}
</section>
</main>
<script type="application/json" id="chart-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""


RENDERERS: dict[str, Callable[[Report], str]] = {
    "table": render_table,
    "csv": render_csv,
    "json": render_json,
    "html": render_html,
}


def render(result: Report, fmt: str = "table") -> str:
    """The report in one of `FORMATS`."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ConfigError([f"format must be one of {', '.join(FORMATS)}, not {fmt!r}"]) from None
    return renderer(result)


def write_output(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` with `write_atomic`, so a reader (or a browser reloading the page)
    never sees half a report; an existing file keeps its permissions."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
