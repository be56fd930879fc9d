"""The dataset schema, the single source of truth for the writer, the DataFrame and the README.

`FILE_SCHEMA` is what each Parquet file holds; `DATASET_SCHEMA` adds the Hive partition column
`snapshot_date`, which lives in the directory name only (a column stored in both places makes
Spark and DuckDB complain about duplicates).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = 3
"""2 appended the getModelVersion detail columns, 3 the rest of the summary's optional fields;
older files read with the newer columns as nulls (columns are only ever appended)."""


class Column(NamedTuple):
    """One column: its Arrow type, whether it may be null, and what it means (for the README)."""

    name: str
    type: pa.DataType
    nullable: bool
    doc: str


_STRINGS = pa.list_(pa.field("element", pa.string()))

PARTITION_COLUMN = Column(
    "snapshot_date",
    pa.date32(),
    False,
    "the day the snapshot stands for (Hive partition `snapshot_date=YYYY-MM-DD`, not in the files)",
)

COLUMNS: tuple[Column, ...] = (
    Column(
        "extracted_at", pa.timestamp("us", tz="UTC"), False, "when the version list was fetched"
    ),
    Column("org", pa.string(), False, "org slug as configured"),
    Column("model", pa.string(), False, "model slug as configured"),
    Column(
        "model_name",
        pa.string(),
        False,
        "`org/model`, the canonical name (every name in the answer is checked to be it or the "
        "slug; v1/v2 files hold the list's `name` as returned)",
    ),
    Column("version", pa.string(), False, "version string exactly as sent (semver or not)"),
    Column(
        "version_rank",
        pa.int32(),
        True,
        "1 = newest, in the order the API listed them; null for a `latest` missing from the list",
    ),
    Column("is_latest", pa.bool_(), False, "the version the API reported as `latest`"),
    Column("artifact_id", pa.string(), True, "artifact id (UUID), where known"),
    Column("created_at", pa.timestamp("us", tz="UTC"), True, "version creation time, where known"),
    Column("download_count", pa.int64(), True, "total downloads of this version, where known"),
    Column("framework", pa.string(), True, "model framework, where known (dictionary-encoded)"),
    Column("is_public", pa.bool_(), True, "whether publicly visible, where known"),
    Column("origin", pa.string(), True, "origin tracking metadata as JSON text, where known"),
    Column("extra", pa.string(), True, "fields the schema does not know yet, as a JSON object"),
    # v2: the getModelVersion detail fields, appended so v1 and v2 files merge by name.
    Column("file_size_bytes", pa.int64(), True, "artifact size in bytes, where the answer says it"),
    Column("license", pa.string(), True, "SPDX identifier or free-form label, where known"),
    Column("task", pa.string(), True, "ML task label (e.g. text-generation), where known"),
    # "element", the name Parquet gives list items, so a file read back equals FILE_SCHEMA.
    Column("tags", _STRINGS, True, "tags, where known"),
    # v3: the summary's other optional fields, from `latest`, an object entry of `versions` or
    # getModelVersion alike (v2 filled license, task and tags from the detail only).
    Column("pretty_name", pa.string(), True, "display name, where known"),
    Column("summary", pa.string(), True, "one-line description, where known"),
    Column("architecture", pa.string(), True, "e.g. LlamaForCausalLM, where known"),
    Column("base_model", pa.string(), True, "parent model (org/name@version), where known"),
    Column("size_category", pa.string(), True, "size bucket (e.g. 1-7B), where known"),
    Column("language", _STRINGS, True, "ISO 639-1 codes, where known"),
    Column("task_categories", _STRINGS, True, "task categories, where known"),
    Column("aliases", _STRINGS, True, "named aliases set after publishing (e.g. prod)"),
    Column("version_count", pa.int32(), True, "the model's number of versions, as it said"),
    Column("updated_at", pa.timestamp("us", tz="UTC"), True, "last update, where known"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

_METADATA = {b"connector.schema_version": str(SCHEMA_VERSION).encode()}

FILE_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, c.type, nullable=c.nullable) for c in COLUMNS], metadata=_METADATA
)
DATASET_SCHEMA: pa.Schema = pa.schema(
    [pa.field(PARTITION_COLUMN.name, PARTITION_COLUMN.type, nullable=False), *FILE_SCHEMA],
    metadata=_METADATA,
)

# Parquet dictionary-encodes these (low cardinality); the rest is left to the writer's defaults.
DICTIONARY_COLUMNS = ["org", "model", "model_name", "framework"]

_PANDAS_TYPES: dict[pa.DataType, Any] = {
    pa.int64(): pd.Int64Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}


def to_dataframe(table: pa.Table) -> pd.DataFrame:
    """Convert a snapshot table to pandas with nullable dtypes, so a null count never turns into
    NaN in a float column (which would also lose exactness above 2**53)."""
    frame: pd.DataFrame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    if PARTITION_COLUMN.name in frame.columns:
        frame[PARTITION_COLUMN.name] = pd.to_datetime(frame[PARTITION_COLUMN.name]).astype(
            "datetime64[s]"
        )
    return frame


def markdown_table() -> str:
    """The schema as a Markdown table (the README's copy is checked against this)."""
    lines = ["| column | type | nullable | meaning |", "|---|---|---|---|"]
    for column in (PARTITION_COLUMN, *COLUMNS):
        nullable = "yes" if column.nullable else "no"
        lines.append(f"| `{column.name}` | {column.type} | {nullable} | {column.doc} |")
    return "\n".join(lines)
