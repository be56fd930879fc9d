"""The HTML page of a report: one self-contained file with an inline chart.

The page makes no network request at all: its style, its script and the chart's data are
inline, and a Content-Security-Policy with the hashes of exactly that style and script keeps
anything else from loading or running. The chart (downloads gained per day, per group) is drawn
by the inline script into an inline SVG from the data embedded as JSON (`chart_data`): lines
over several intervals, bars for a single one, a distinct colour per series.
"""

from __future__ import annotations

import base64
import colorsys
import hashlib
import html
import json
from typing import Any

from connector.redaction import printable
from connector.reporting.analytics import Report
from connector.reporting.cells import (
    CHART_MAX_SERIES,
    LABELS,
    NUM_CLASS,
    column_notes,
    human_rows,
    plain,
    summary_line,
    title,
)

_TABLEAU = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)

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
.swatch { display: inline-block; width: 24px; height: 12px; margin-right: .4rem;
  vertical-align: middle; }
.column-notes { color: #57606a; font-size: .9rem; margin: .5rem 0 0; }
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
  const DASH = "6 4";
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
  const plotW = W - M.left - M.right, plotH = H - M.top - M.bottom;
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
  const yLabel = `translate(18 ${M.top + plotH / 2}) rotate(-90)`;
  el("text", {"text-anchor": "middle", transform: yLabel}, axes).textContent =
    "downloads gained per day";
  function tip(node, s, p) {
    const over = p.days > 1 ? ` over ${p.days} days (${fmt.format(p.perDay)} per day)` : "";
    el("title", {}, node).textContent =
      `${s.label}, ${p.date}: ${fmt.format(p.gained)} gained${over}`;
  }
  let drawn = 0;
  if (data.kind === "bars") {  // a single interval: one bar per series, not a column of dots
    const band = plotW / series.length;
    el("text", {x: M.left + plotW / 2, y: H - M.bottom + 20, "text-anchor": "middle"}, axes)
      .textContent = data.interval;
    series.forEach((s, i) => {
      const group = el("g", {class: "series", "data-label": s.label}, svg);
      for (const p of s.points) {
        const top = y(p.perDay);
        const bar = el("rect", {class: "bar", x: (M.left + (i + 0.15) * band).toFixed(1),
                                y: top.toFixed(1), width: (band * 0.7).toFixed(1),
                                height: (y(0) - top).toFixed(1), fill: s.color}, group);
        tip(bar, s, p);
        drawn += 1;
      }
    });
  } else {
    const time = d => Date.parse(d + "T00:00:00Z");
    const t0 = time(dates[0]), t1 = time(dates[dates.length - 1]);
    const x = d => M.left + (time(d) - t0) / (t1 - t0) * plotW;
    const every = Math.ceil(dates.length / 10);
    dates.forEach((d, i) => {
      if (i % every !== 0) return;
      el("text", {x: x(d), y: H - M.bottom + 20, "text-anchor": "middle"}, axes).textContent = d;
    });
    series.forEach(s => {
      const group = el("g", {class: "series", "data-label": s.label}, svg);
      const path = s.points.map(
        (p, j) => `${j ? "L" : "M"}${x(p.date).toFixed(1)} ${y(p.perDay).toFixed(1)}`);
      el("path", {class: "line", d: path.join(" "), stroke: s.color,
                  "stroke-dasharray": s.dashed ? DASH : "none"}, group);
      for (const p of s.points) {
        const dot = el("circle",
                       {class: "point", cx: x(p.date), cy: y(p.perDay), r: 3.5, fill: s.color},
                       group);
        tip(dot, s, p);
        drawn += 1;
      }
    });
  }
  for (const s of series) {  // each swatch drawn like its series: a bar, or a (dashed) line
    const item = document.createElement("li");
    const swatch = document.createElementNS(NS, "svg");
    swatch.setAttribute("class", "swatch");
    swatch.setAttribute("viewBox", "0 0 24 12");
    if (data.kind === "bars") {
      el("rect", {x: 0, y: 0, width: 24, height: 12, rx: 2, fill: s.color}, swatch);
    } else {
      el("line", {x1: 0, y1: 6, x2: 24, y2: 6, stroke: s.color, "stroke-width": 3,
                  "stroke-dasharray": s.dashed ? DASH : "none"}, swatch);
    }
    item.append(swatch, s.label);
    legend.append(item);
  }
  if (data.capped) {
    note.textContent = `The chart shows the first ${series.length} rows of the table.`;
  }
  svg.setAttribute("data-series", String(series.length));
  svg.setAttribute("data-points", String(drawn));
  svg.setAttribute("data-kind", data.kind);
})();
"""


def palette(count: int) -> list[str]:
    """`count` distinct colours: Tableau's ten, then hues a golden angle apart at three
    lightnesses, so no two series share a colour however many there are."""
    colours = list(_TABLEAU[:count])
    hue, index = 0.0, 0
    while len(colours) < count:
        hue = (hue + 0.618033988749895) % 1.0
        lightness = (0.36, 0.5, 0.64)[index % 3]
        index += 1
        red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.62)
        colour = f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"
        if colour not in colours:
            colours.append(colour)
    return colours


def chart_data(result: Report, limit: int = CHART_MAX_SERIES) -> dict[str, Any]:
    """The chart's series (one per group, in table order), as embedded in the HTML page.

    `kind` is "bars" when the window is a single interval (two snapshots): one point per
    series, which as lines would be a column of dots. Each series has its own colour; past the
    ten classic ones they are also `dashed`, which the legend's swatch shows too.
    """
    daily = result.daily
    labels = list(dict.fromkeys(daily["group"].tolist()))[:limit] if len(daily) else []
    colours = palette(len(labels))
    series: list[dict[str, Any]] = []
    for index, label in enumerate(labels):
        points = daily[daily["group"] == label]
        series.append(
            {
                "label": printable(label) if isinstance(label, str) else label,
                "color": colours[index],
                "dashed": index >= len(_TABLEAU),
                "points": [
                    {
                        "date": plain(row.snapshot_date),
                        "days": int(row.days),
                        "gained": int(row.downloads_gained),
                        "perDay": float(row.gained_per_day),
                    }
                    for row in points.itertuples(index=False)
                ],
            }
        )
    dates = {point["date"] for entry in series for point in entry["points"]}
    return {
        "kind": "bars" if len(dates) == 1 else "lines",
        "interval": f"{result.window.start} to {result.window.end}",
        "series": series,
        "capped": len(set(daily["group"])) > limit if len(daily) else False,
    }


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _html_table(result: Report) -> str:
    columns, numeric, rows = human_rows(result)
    head = "".join(
        f'<th scope="col" title="{html.escape(c)}"{NUM_CLASS if n else ""}>'
        f"{html.escape(LABELS.get(c, c))}</th>"
        for c, n in zip(columns, numeric, strict=True)
    )
    body = "\n".join(
        "<tr>"
        + "".join(
            f"<td{NUM_CLASS if n else ''}>{html.escape(cell)}</td>"
            for cell, n in zip(row, numeric, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table></div>"
    )


def _column_notes_html(result: Report) -> str:
    columns, _, _ = human_rows(result)
    notes = column_notes(columns)
    return f'<p class="column-notes">{html.escape("; ".join(notes))}</p>' if notes else ""


def render_html(result: Report) -> str:
    """One self-contained HTML5 page: title, notes, the chart (drawn by inline script) and table."""
    style, script = _STYLE, _SCRIPT
    data = json.dumps(chart_data(result), ensure_ascii=True, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    policy = (
        f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(script)};"
        " img-src data:; base-uri 'none'; form-action 'none'"
    )
    notes = "".join(f"<li>{html.escape(printable(note))}</li>" for note in result.notes)
    heading = html.escape(title(result))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(policy, quote=False)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{heading}</title>
<style>{style}</style>
</head>
<body>
<main>
<h1>{heading}</h1>
<p class="summary">{html.escape(summary_line(result))}</p>
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
{_column_notes_html(result)}
</section>
</main>
<script type="application/json" id="chart-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
