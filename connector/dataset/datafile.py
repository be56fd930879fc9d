"""Stream rows into Parquet data files of a store, in bounded batches.

Python rows (dicts) take about ten times the memory of the same rows in Arrow, so they are
converted in small chunks and only the compact chunks wait for a full row group; a row group is
written as soon as it is full, so memory follows `batch_rows`, not the size of the run.
Each file is written through the store's sink: it appears, whole, at its name when it is closed
(`commit`), never half written. A file's footer can carry a document (`footer`): the manifest of
a published day rides in its data file, so the file says by itself which run wrote it.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from connector.dataset.flatten import Row, rows_to_table
from connector.dataset.schema import DICTIONARY_COLUMNS, FILE_SCHEMA
from connector.dataset.state import parse_json
from connector.dataset.store import OUTPUT_ERRORS, STORAGE_ERRORS, Sink, Store
from connector.errors import OutputError
from connector.loggers import get_logger

log = get_logger(__name__)

FOOTER_KEY = b"connector.manifest"
# Converting Python rows to Arrow holds the GIL throughout (about 2-3 us a row): while it runs,
# no fetch worker can take its answer. In chunks of 512 rows each stall is about a millisecond;
# at 4,096 rows, every answer arriving during a 10-15 ms stall waited for it (0.1 s of a
# 2,000-model run's 3 s, measured); smaller chunks cost more per row than they save.
_CHUNK_ROWS = 512
DEFAULT_FILE_ROWS = 2_000_000


class DataFileWriter:
    """Rows into `directory/<prefix>-NNNNN.parquet` files of a store (one file, when
    `file_rows` is None); `close()` commits them, `abort()` leaves none of them behind."""

    def __init__(
        self,
        store: Store,
        directory: str,
        *,
        prefix: str = "part",
        batch_rows: int = 16_384,
        file_rows: int | None = DEFAULT_FILE_ROWS,
        single_name: str | None = None,
    ) -> None:
        """`single_name`: write exactly one file of that name (a day's data file)."""
        self.store = store
        self.directory = directory
        self._prefix = prefix
        self._single = single_name
        self._batch_rows = batch_rows
        self._file_rows = None if single_name else file_rows
        self._pending: list[Row] = []  # Python rows, converted to Arrow every _CHUNK_ROWS
        self._chunks: list[pa.Table] = []  # compact chunks waiting to fill a row group
        self._chunk_rows = 0
        self._sink: Sink | None = None
        self._writer: pq.ParquetWriter | None = None
        self._file_rows_written = 0
        self.files: list[str] = []  # names of the files committed or being written
        self.rows = 0
        self.closed = False

    @property
    def shown(self) -> str:
        """Where the files go, as a person would type it."""
        return self.store.display(self.directory)

    def add_rows(self, rows: list[Row]) -> None:
        """Queue rows; a full batch is written as a row group straight away."""
        self._pending.extend(rows)
        if len(self._pending) >= min(_CHUNK_ROWS, self._batch_rows):
            self._convert_pending()
        if self._chunk_rows >= self._batch_rows:
            self._flush()

    def add_table(self, table: pa.Table) -> None:
        """Queue rows that are already Arrow (a staged part's files, read back)."""
        self._convert_pending()
        self._chunks.append(table.cast(FILE_SCHEMA))
        self._chunk_rows += table.num_rows
        if self._chunk_rows >= self._batch_rows:
            self._flush()

    def _convert_pending(self) -> None:
        if self._pending:
            self._chunks.append(rows_to_table(self._pending))
            self._chunk_rows += len(self._pending)
            self._pending = []

    def _flush(self) -> None:
        self._convert_pending()
        if not self._chunks and self._writer is not None:
            return
        table = pa.concat_tables(self._chunks) if self._chunks else rows_to_table([])
        self._chunks, self._chunk_rows = [], 0
        try:
            if self._writer is None:
                self._open_file()
            assert self._writer is not None
            self._writer.write_table(table)
            self.rows += table.num_rows
            self._file_rows_written += table.num_rows
            if self._file_rows is not None and self._file_rows_written >= self._file_rows:
                self._commit_file()
        except STORAGE_ERRORS as exc:
            raise OutputError(f"cannot write Parquet in {self.shown}: {exc}") from exc

    def _open_file(self) -> None:
        name = self._single or f"{self._prefix}-{len(self.files):05d}.parquet"
        self._sink = self.store.open_sink(f"{self.directory}/{name}")
        self.files.append(name)
        self._file_rows_written = 0
        self._writer = pq.ParquetWriter(
            self._sink.stream,
            FILE_SCHEMA,
            compression="zstd",
            use_dictionary=DICTIONARY_COLUMNS,
        )

    def _commit_file(self, footer: dict[str, Any] | None = None) -> None:
        writer, sink = self._writer, self._sink
        self._writer = self._sink = None
        if writer is None or sink is None:
            return
        if footer is not None:
            writer.add_key_value_metadata({FOOTER_KEY: encode(footer)})
        writer.close()
        sink.commit()

    def close(self, footer: dict[str, Any] | None = None) -> list[str]:
        """Write what is buffered and commit the files (an empty one when there are no rows, so
        readers see the schema); `footer` goes into the last file's footer, with `rows` added.
        Returns the file names. Raises OutputError."""
        try:
            if self._pending or self._chunks or not self.files or self._writer is None:
                self._flush()
            document = None if footer is None else {**footer, "rows": self.rows}
            self._commit_file(document)
        except STORAGE_ERRORS as exc:
            self.abort()
            raise OutputError(f"cannot write Parquet in {self.shown}: {exc}") from exc
        except BaseException:
            self.abort()
            raise
        self.closed = True
        return list(self.files)

    def abort(self) -> None:
        """Stop writing: the file being written never appears, and the files this writer
        committed are deleted (nothing refers to them yet). Never raises."""
        if self.closed:
            return
        self.closed = True
        writer, sink = self._writer, self._sink
        self._writer = self._sink = None
        if writer is not None:
            try:
                writer.close()
            except STORAGE_ERRORS:
                log.debug("closing an aborted Parquet writer failed", exc_info=True)
        if sink is not None:
            sink.abort()
        for name in self.files[:-1] if sink is not None else self.files:
            try:
                self.store.delete(f"{self.directory}/{name}")
            except OUTPUT_ERRORS as exc:
                log.warning("could not remove %s/%s: %s", self.shown, name, exc)


def encode(document: dict[str, Any]) -> bytes:
    """A document as the connector writes JSON: indented, sorted keys, a final newline."""
    return (json.dumps(document, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def read_footer(store: Store, path: str) -> dict[str, Any] | None:
    """The document in a data file's footer; None when the file or the document is absent.
    OutputError naming the file when it is not a readable Parquet file or the document is not
    a JSON object."""
    try:
        info = store.info(path)
        if info is None:
            return None
        if info.kind != "file":
            raise OutputError(f"{store.display(path)} is not a regular file")
        with store.filesystem.open_input_file(store.native(path)) as handle:
            metadata = pq.read_metadata(handle)
    except FileNotFoundError:
        return None
    except STORAGE_ERRORS as exc:
        raise OutputError(f"cannot read the footer of {store.display(path)}: {exc}") from exc
    raw = (metadata.metadata or {}).get(FOOTER_KEY)
    if raw is None:
        return None
    document = parse_json(raw, f"the manifest in the footer of {store.display(path)}")
    if not isinstance(document, dict):
        raise OutputError(f"the manifest in the footer of {store.display(path)} is not an object")
    return document
