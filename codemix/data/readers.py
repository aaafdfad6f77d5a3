"""Raw-file readers for the `full` corpus configs, with errors a user can act on.

Every reader works on local paths and on `gs://` (through `tf.io.gfile`, which
also understands other remote schemes TensorFlow was built with). Each problem
in the input ends in a `DataError` that names the file, the line (where there
is one) and how to fix it, or, for problems that are tolerated up to a limit
(malformed JSON lines), in a count kept in a `collections.Counter` that the
corpus builder reports.

Formats: JSONL (plain, `.gz`, `.zst`), Parquet, whole text files.
"""
from __future__ import annotations

import collections
import gzip
import io
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import tensorflow as tf

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A user-fixable problem with input data: names the file, line and fix."""


def expand_glob(pattern: str) -> list[str]:
    """Files matching `pattern` (local or gs://), sorted; DataError if none."""
    if tf.io.gfile.exists(pattern) and not tf.io.gfile.isdir(pattern):
        return [pattern]
    if tf.io.gfile.exists(pattern) and tf.io.gfile.isdir(pattern):
        pattern = pattern.rstrip("/") + "/*"
    files = sorted(f for f in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(f))
    if not files:
        raise DataError(
            f"no files match {pattern!r}; check the path and the glob (e.g. "
            f"'/data/slimpajama/train/chunk1/*.jsonl.zst' or 'gs://bucket/the-stack/python/*.parquet')."
        )
    return files


def _open_bytes(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    if not raw:
        raise DataError(f"{path}: the file is empty; remove it from the input glob or re-export it.")
    return raw


def _decompress(path: str, raw: bytes) -> bytes:
    if path.endswith((".zst", ".zstd")):
        import zstandard

        try:
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as r:
                data = r.read()
        except zstandard.ZstdError as e:
            raise DataError(f"{path}: not a valid zstd stream ({e}); re-download or re-compress the file.") from e
    elif path.endswith(".gz"):
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: not a valid gzip file ({e}); re-download or re-compress the file.") from e
    else:
        return raw
    if not data:
        raise DataError(f"{path}: the file is empty after decompression; remove it or re-export it.")
    return data


def decode_utf8(data: bytes, path: str, line: int | None = None) -> str:
    """`data` as text; DataError naming the file, line and byte offset if invalid."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = f"{path}:{line}" if line is not None else path
        raise DataError(
            f"{where}: invalid UTF-8 at byte {e.start} ({data[e.start:e.start + 4]!r}); "
            f"convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or drop it from the glob."
        ) from e


def get_field(record: dict, field: str, path: str, line: int) -> Any:
    """`record[a][b]` for field 'a.b'; DataError naming file, line and fix if absent."""
    value: Any = record
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise DataError(
                f"{path}:{line}: missing field {field!r} (record has {keys}); "
                f"set the builder's field name to the one your files use, or fix the record."
            )
        value = value[part]
    return value


def read_jsonl(
    pattern: str,
    fields: Sequence[str],
    counts: collections.Counter,
    max_bad_lines: int = 100,
) -> Iterator[tuple[str, int, dict]]:
    """Yield (file, line number, {field: value}) from JSONL files.

    Args:
      pattern: file, folder or glob; `.gz` and `.zst` are decompressed.
      fields: dotted names to extract from each record (e.g. "meta.redpajama_set_name").
      counts: receives "malformed_json" per bad line.
      max_bad_lines: malformed lines tolerated (counted, skipped) over all files
        before the count becomes a DataError; 0 makes the first one fatal.
    """
    for path in expand_glob(pattern):
        data = _decompress(path, _open_bytes(path))
        for lineno, raw_line in enumerate(data.split(b"\n"), start=1):
            if not raw_line.strip():
                continue
            text = decode_utf8(raw_line, path, lineno)
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON {type(record).__name__}, not an object")  # noqa: TRY004
            except ValueError as e:
                counts["malformed_json"] += 1
                msg = f"{path}:{lineno}: malformed JSON line ({e})"
                if counts["malformed_json"] > max_bad_lines:
                    raise DataError(
                        f"{msg}; {counts['malformed_json']} malformed lines exceed max_bad_lines="
                        f"{max_bad_lines}. Fix or drop the file, or raise CorpusOptions.max_bad_lines."
                    ) from e
                log.warning("%s; skipped (%d so far)", msg, counts["malformed_json"])
                continue
            yield path, lineno, {f: get_field(record, f, path, lineno) for f in fields}


def read_parquet(pattern: str, fields: Sequence[str]) -> Iterator[tuple[str, int, dict]]:
    """Yield (file, row number, {field: value}) from Parquet files (local or gs://)."""
    import pyarrow.parquet as pq

    for path in expand_glob(pattern):
        raw = _open_bytes(path)
        try:
            table = pq.read_table(io.BytesIO(raw))
        except Exception as e:  # pyarrow raises ArrowInvalid and friends
            raise DataError(f"{path}: not a readable Parquet file ({e}); re-export it or drop it.") from e
        missing = [f for f in fields if f not in table.column_names]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {missing} (has {table.column_names}); set the builder's "
                f"field name to the one your files use."
            )
        columns = {f: table.column(f).to_pylist() for f in fields}
        for row in range(table.num_rows):
            yield path, row + 1, {f: columns[f][row] for f in fields}


def read_text_file(path: str) -> str:
    """A whole UTF-8 text file (local or gs://); DataError on empty or invalid files."""
    return decode_utf8(_open_bytes(path), path)
