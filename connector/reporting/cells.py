"""Cells of a report for people: values made plain, formatted, labelled and escaped.

Shared by every format (`connector.reporting.render` for the table, CSV and JSON,
`connector.reporting.page` for the HTML page), so a value looks the same in each and server text
is escaped by one function (`connector.redaction.printable`) before any format adds its own.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from connector.redaction import printable
from connector.reporting.analytics import Report

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
TEXT_WIDTH = 40
_BLANK = ("", "-")  # how _cell shows an unknown value or an unset flag
_COLUMN_NOTES = {
    "baseline_count": "baseline: the count a version's gain is measured from: its count at the "
    "start snapshot; 0 for a version created in the window; otherwise its first count seen in "
    'the window (then marked "from first obs.")',
    "counted_from_first_observation": "from first obs.: the version was older than the window "
    "but not in the start snapshot (its model failed that day, say), so only downloads after "
    "its first observation count",
    "versions_from_first_observation": "from first obs.: how many of the group's versions were "
    "counted from their first observation (older than the window, missing from the start "
    "snapshot)",
}
NUM_CLASS = ' class="num"'


def plain(value: Any) -> Any:
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


def _datetime_column(column: pd.Series) -> list[Any]:
    """`plain` over a datetime column in numpy: a naive value (a snapshot day) as its date, an
    aware one as UTC ISO text with `Z` and a fraction only when it has one (as
    `Timestamp.isoformat` writes it). A value with nanoseconds goes through `plain` itself."""
    aware = isinstance(column.dtype, pd.DatetimeTZDtype)
    values = (column.dt.tz_convert("UTC").dt.tz_localize(None) if aware else column).to_numpy()
    if not aware:
        texts = np.datetime_as_string(values, unit="D")
    else:
        texts = np.char.add(np.datetime_as_string(values, unit="s"), "Z")
        nanos = (values - values.astype("datetime64[s]")).astype("timedelta64[ns]").astype("int64")
        for index in np.flatnonzero(nanos):
            if nanos[index] % 1000:
                texts[index] = plain(column.iloc[index])
            else:
                texts[index] = f"{str(texts[index])[:-1]}.{nanos[index] // 1000:06d}Z"
    missing = np.isnat(values)
    return [
        None if gone else text for text, gone in zip(texts.tolist(), missing.tolist(), strict=True)
    ]


def plain_column(column: pd.Series) -> list[Any]:
    """One column as JSON-able Python values, converted a column at a time (a report by
    version can have a row per version of the registry)."""
    if pd.api.types.is_bool_dtype(column.dtype) and not column.hasnans:
        return list(column.astype(bool).tolist())
    if pd.api.types.is_integer_dtype(column.dtype) and not column.hasnans:
        return list(column.astype("int64").tolist())
    if pd.api.types.is_float_dtype(column.dtype):
        values = column.astype("float64").tolist()
        return [None if math.isnan(value) else value for value in values]
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        return _datetime_column(column)
    return [value if type(value) is str else plain(value) for value in column.astype(object)]


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table's rows as plain dicts (the JSON output, and the source of every other format)."""
    names = [str(name) for name in table.columns]
    columns = [plain_column(table[name]) for name in table.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


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
    text = printable(str(value))
    if column == "created_at":
        text = text[:16].replace("T", " ")
    return _text(text, width)


def _text(text: str, width: int | None) -> str:
    """Text escaped (`printable`) and cut at `width` with an ellipsis."""
    text = printable(text)
    return text if width is None or len(text) <= width else text[: width - 3] + "..."


def _column_cells(column: str, values: list[Any], width: int | None) -> list[str]:
    """`_cell` over one column; the common kinds (counts, flags) without a call per cell."""
    kinds = {type(value) for value in values if value is not None}
    blank = "" if column == "first_observed" else "-"
    if kinds == {bool}:
        return [blank if v is None else "yes" if v else "" for v in values]
    if kinds == {int}:
        return [blank if v is None else f"{v:,}" for v in values]
    if kinds == {float} and column != "share_of_gained":
        return [blank if v is None else f"{v:,.1f}" for v in values]
    if kinds == {str} and column != "created_at":
        return [blank if v is None else _text(v, width) for v in values]
    return [_cell(column, value, width) for value in values]


def human_rows(
    result: Report, width: int | None = None
) -> tuple[list[str], list[bool], list[list[str]]]:
    """Visible columns, which are numeric, and the formatted cells (text cut at `width`).

    A column that is blank in every row (no version is new, none decreased, no framework
    known) says nothing and is left out; CSV and JSON keep every column."""
    table = result.table
    columns = [c for c in table.columns if c not in _HIDDEN]
    cells = [_column_cells(c, plain_column(table[c]), width) for c in columns]
    keep = [
        i for i in range(len(columns)) if not len(table) or any(v not in _BLANK for v in cells[i])
    ]
    return (
        [columns[i] for i in keep],
        [_is_number_column(table, columns[i]) for i in keep],
        [list(row) for row in zip(*(cells[i] for i in keep), strict=True)],
    )


def column_notes(columns: list[str]) -> list[str]:
    """What the less obvious column headers mean, for the columns shown."""
    return [text for column, text in _COLUMN_NOTES.items() if column in columns]


def title(result: Report) -> str:
    return f"Downloads gained by {result.by}, {result.window.start} to {result.window.end}"


def summary_line(result: Report) -> str:
    window = result.window
    groups = f"{result.total_groups:,} {result.by}{'' if result.total_groups == 1 else 's'}"
    shown = f"top {len(result.table):,} shown" if len(result.table) < result.total_groups else ""
    days = f"{window.days} day{'' if window.days == 1 else 's'}"
    return (
        f"{days}, {len(window.snapshots)} snapshots; "
        f"{result.total_gained:,} downloads gained across {groups}"
        + (f" ({shown})" if shown else "")
    )
