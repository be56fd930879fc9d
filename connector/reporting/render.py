"""Turn a computed report into text: a terminal table, CSV, JSON or one self-contained HTML page.

Every format starts from the same plain cells (`records`), so they cannot disagree: dates as
`YYYY-MM-DD`, timestamps as ISO 8601 in UTC, unknown values as null (empty in CSV, `-` in the
table). The HTML page makes no network request at all: its style, its script and the chart's data
are inline, and a Content-Security-Policy with the hashes of exactly that style and script keeps
anything else from loading or running. The chart (downloads gained per day, per group) is drawn
by the inline script into an inline SVG, from the data embedded as JSON.

Org, model, version and framework names come from a server. Each format escapes them for its
medium with `connector.redaction` (STYLE 23): the table and the page show control characters as
`printable` escapes, CSV neutralises formulas (`csv_cell`), JSON escapes what a terminal would
act on (`json_printable`), the page HTML-escapes on top.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from typing import Any

from connector.atomic import write_atomic
from connector.errors import ConfigError, OutputError
from connector.redaction import csv_cell, json_printable, printable
from connector.reporting.analytics import Report
from connector.reporting.cells import (
    LABELS,
    TEXT_WIDTH,
    column_notes,
    human_rows,
    plain_column,
    records,
    summary_line,
    title,
)
from connector.reporting.page import render_html

FORMATS = ("table", "csv", "json", "html")


def render_json(result: Report) -> str:
    """A JSON list of objects, one per group; strings exactly as stored (JSON-escaped where a
    terminal would act on a character)."""
    return json_printable(json.dumps(records(result.table), indent=2, ensure_ascii=False)) + "\n"


def _csv_value(value: Any) -> Any:
    """One CSV cell: numbers as they are (a number cannot carry a formula, and `-3` must stay a
    number), booleans as true/false, unknown values empty, text through `csv_cell`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    return csv_cell(str(value))


def render_csv(result: Report) -> str:
    """CSV with a header row; booleans as true/false, unknown values empty, text cells safe to
    open in a spreadsheet (`_csv_value`)."""
    table = result.table
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    columns = [[_csv_value(v) for v in plain_column(table[name])] for name in table.columns]
    writer.writerows(zip(*columns, strict=True))
    return buffer.getvalue()


def render_table(result: Report) -> str:
    """An aligned table for a terminal: numbers right-aligned, text left-aligned."""
    columns, numeric, rows = human_rows(result, TEXT_WIDTH)
    headers = [LABELS.get(c, c) for c in columns]
    # A column at a time (a report by version can have a row per version of the registry).
    padded = []
    for index, (header, right) in enumerate(zip(headers, numeric, strict=True)):
        cells = [header, "", *(row[index] for row in rows)]
        width = max(map(len, cells))
        cells[1] = "-" * width
        padded.append([cell.rjust(width) if right else cell.ljust(width) for cell in cells])
    out = [title(result), summary_line(result), ""]
    out += ["  ".join(line).rstrip() for line in zip(*padded, strict=True)]
    if not rows:
        out.append("(no rows)")
    legend = column_notes(columns)
    out += ["", *legend] if legend else []
    out += [f"note: {printable(note)}" for note in result.notes]
    return "\n".join(out) + "\n"


RENDERERS: dict[str, Callable[[Report], str]] = {
    "table": render_table,
    "csv": render_csv,
    "json": render_json,
    "html": render_html,  # connector.reporting.page
}


def render(result: Report, fmt: str = "table") -> str:
    """The report in one of `FORMATS`."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ConfigError([f"format must be one of {', '.join(FORMATS)}, not {fmt!r}"]) from None
    return renderer(result)


def write_report(result: Report, path: str | os.PathLike[str], fmt: str = "html") -> None:
    """`result` rendered in one of `FORMATS` and written to `path` atomically: `report -o`,
    and the library's way to save a report (the sample DAG's weekly page)."""
    write_output(path, render(result, fmt))


def write_output(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` with `write_atomic`, so a reader (or a browser reloading the page)
    never sees half a report; an existing file keeps its permissions."""
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
