"""Raw-file readers for the `full` corpus configs, with errors a user can act on.

Every reader works on local paths and on `gs://` (through `tf.io.gfile`, which
also understands other remote schemes TensorFlow was built with). Each problem
in the input ends in a `DataError` that names the file, the line (where there
is one) and how to fix it, or, for problems that are tolerated up to a limit
(malformed JSON lines; compressed files cut short or corrupt part-way, whose
readable records are kept and the rest counted as lost, or as a loss of unknown
size where the file does not record its size), in a count kept in a
`collections.Counter` that the corpus builder reports.

Formats: JSONL (plain, `.gz`, `.zst`), Parquet, whole text files.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import tensorflow as tf

from codemix.errors import DataError

log = logging.getLogger(__name__)


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


@dataclasses.dataclass
class Decoded:
    """A file's bytes after decompression, and what went wrong if it was cut short.

    `problem` is None for a complete file; otherwise it says how the stream
    ends ("truncated ..." or "corrupt ...") and `data` holds what could be
    decompressed before that point. `expected_bytes` is the decompressed size
    recorded in the zstd frame headers, when they record it (a file written
    by a streaming compressor does not). `undecoded_bytes` counts the
    compressed bytes on disk that produced no output: a truncated zstd
    frame's incomplete last block, or everything from a corrupt frame or
    gzip member on (what is missing after a truncation is not on disk, and
    its size is unknown unless `expected_bytes` says it).
    """

    data: bytes
    problem: str | None = None
    expected_bytes: int | None = None
    undecoded_bytes: int = 0


def _zstd_incomplete_block(frame: bytes) -> int:
    """Bytes at the end of a truncated zstd frame that belong to its incomplete
    last block (a decoder outputs a block only once it has all of it).

    Walks the block headers (RFC 8878 3.1.1.2: 3 bytes, little-endian: bit 0
    last-block, bits 1-2 type, bits 3-23 size; an RLE block has one byte of
    content) from the end of the frame header.
    """
    import zstandard

    try:
        pos = zstandard.frame_header_size(frame)
    except zstandard.ZstdError:
        return len(frame)  # not even the frame header is complete
    while pos + 3 <= len(frame):
        header = int.from_bytes(frame[pos:pos + 3], "little")
        size = 1 if (header >> 1) & 3 == 1 else header >> 3
        if pos + 3 + size > len(frame) or header & 1:
            break
        pos += 3 + size
    return len(frame) - pos


def _unzstd(path: str, raw: bytes) -> Decoded:
    """Frame by frame, so a stream that stops mid-frame is noticed (zstandard's
    stream reader returns the decodable prefix of a truncated file silently)."""
    import zstandard

    out: list[bytes] = []
    expected: int | None = 0
    rest = raw
    while rest:
        if expected is not None:
            try:
                size = zstandard.frame_content_size(rest)
                expected = expected + size if size >= 0 else None
            except zstandard.ZstdError:
                expected = None
        d = zstandard.ZstdDecompressor().decompressobj()
        try:
            out.append(d.decompress(rest))
        except zstandard.ZstdError as e:
            done = sum(map(len, out))
            return Decoded(b"".join(out), f"corrupt zstd data after {done:,} decompressed bytes ({e})", expected,
                           len(rest))
        if not d.eof:
            got = b"".join(out)
            size = f" of {expected:,}" if expected else ""
            return Decoded(got, f"truncated: the zstd stream ends mid-frame after {len(got):,}{size} "
                                f"decompressed bytes ({len(raw):,} compressed bytes on disk)", expected,
                           _zstd_incomplete_block(rest))
        rest = d.unused_data
    return Decoded(b"".join(out), None, expected)


def _gunzip(raw: bytes) -> Decoded:
    out: list[bytes] = []
    rest = raw
    while rest:
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(rest))
        except zlib.error as e:
            done = sum(map(len, out))
            return Decoded(b"".join(out), f"corrupt gzip data after {done:,} decompressed bytes ({e})",
                           undecoded_bytes=len(rest))
        if not d.eof:
            got = b"".join(out)
            return Decoded(got, f"truncated: the gzip stream ends after {len(got):,} decompressed bytes "
                                f"({len(raw):,} compressed bytes on disk)")
        rest = d.unused_data.lstrip(b"\0")  # some writers pad members with zeros
    return Decoded(b"".join(out))


def decompress(path: str, raw: bytes) -> Decoded:
    """`raw` decompressed by the file's extension (.zst/.zstd, .gz; else as is).
    DataError if nothing at all can be decompressed (a corrupt file) or the
    complete stream is empty; a stream cut short returns its readable part
    with `problem` set, for the caller to count."""
    if path.endswith((".zst", ".zstd")):
        out = _unzstd(path, raw)
        kind = "zstd"
    elif path.endswith(".gz"):
        out = _gunzip(raw)
        kind = "gzip"
    else:
        return Decoded(raw)
    if out.problem and not out.data:
        raise DataError(f"{path}: corrupt {kind} file, nothing could be decompressed ({out.problem}); "
                        f"re-download or re-compress the file, or drop it from the glob.")
    if not out.data:
        raise DataError(f"{path}: the file is empty after decompression; remove it or re-export it.")
    return out


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


def _count_damaged_file(path: str, decoded: Decoded, lines: list[bytes], counts: collections.Counter,
                        max_bad_files: int) -> list[bytes]:
    """Count a truncated/corrupt compressed file and the records it lost; the
    line cut in the middle is dropped. DataError beyond `max_bad_files`.

    Counts (int counters, so Beam metrics carry them too):
      damaged_compressed_files                      every such file
      records_lost_in_damaged_files                 estimated loss, only where the zstd
                                                    frame header records the full size
      damaged_files_with_unknown_loss               files whose loss can't be known (a
                                                    streamed .zst, any .gz): never a guess
      undecoded_compressed_bytes_in_damaged_files   compressed bytes on disk that gave no
                                                    output (see Decoded.undecoded_bytes)
    """
    complete = lines[:-1]  # the last line stops where the stream stopped
    kept = sum(1 for line in complete if line.strip())
    lost_bytes = (decoded.expected_bytes or 0) - len(decoded.data)
    per_line = (len(decoded.data) - len(lines[-1])) / max(kept, 1)
    undecoded = decoded.undecoded_bytes
    if decoded.expected_bytes and lost_bytes > 0 and kept:
        lost = 1 + round(lost_bytes / per_line)
        counts["records_lost_in_damaged_files"] += lost
        lost_text = f"~{lost:,} records lost (estimated from the size in the frame header), {kept:,} kept"
    else:
        counts["damaged_files_with_unknown_loss"] += 1
        where = ("the rest of the stream is missing from the file" if decoded.problem.startswith("truncated")
                 else "nothing after the damage can be read")
        unread = f"; {undecoded:,} compressed bytes on disk could not be decoded" if undecoded else ""
        lost_text = f"records lost: unknown ({kept:,} kept; the file records no total size and {where}{unread})"
    counts["damaged_compressed_files"] += 1
    if undecoded:
        counts["undecoded_compressed_bytes_in_damaged_files"] += undecoded
    msg = f"{path}: {decoded.problem}; {lost_text}"
    if counts["damaged_compressed_files"] > max_bad_files:
        raise DataError(
            f"{msg}. {counts['damaged_compressed_files']} damaged file(s) exceed max_bad_files={max_bad_files}: "
            f"re-download or re-compress the file, drop it from the glob, or raise "
            f"CorpusOptions.max_bad_files to keep its readable records."
        )
    log.warning("%s; its readable records are kept (%d damaged file(s) so far)", msg,
                counts["damaged_compressed_files"])
    return complete


BAD_LINE_RULES = ("malformed_json", "invalid_utf8")


def bad_lines(counts) -> int:
    """Lines skipped as unreadable so far (every rule of BAD_LINE_RULES)."""
    return sum(counts.get(rule, 0) for rule in BAD_LINE_RULES)


def _count_bad_line(counts: collections.Counter, rule: str, msg: str, max_bad_lines: int) -> None:
    """Count one unreadable line under `rule`; DataError once all such lines exceed the limit."""
    counts[rule] += 1
    if bad_lines(counts) > max_bad_lines:
        raise DataError(
            f"{msg}; {bad_lines(counts)} unreadable lines (malformed JSON or invalid UTF-8) exceed "
            f"max_bad_lines={max_bad_lines}. Fix or drop the file, or raise CorpusOptions.max_bad_lines.")
    log.warning("%s; skipped (%d %s so far)", msg, counts[rule], rule)


def read_jsonl(
    pattern: str,
    fields: Sequence[str],
    counts: collections.Counter,
    max_bad_lines: int = 100,
    max_bad_files: int = 0,
) -> Iterator[tuple[str, int, dict]]:
    """Yield (file, line number, {field: value}) from JSONL files.

    Args:
      pattern: file, folder or glob; `.gz` and `.zst` are decompressed.
      fields: dotted names to extract from each record (e.g. "meta.redpajama_set_name").
      counts: receives "malformed_json" per line that is not a JSON object,
        "invalid_utf8" per line that is not UTF-8, and per truncated or
        corrupt compressed file the counts of `_count_damaged_file`
        ("records_lost_in_damaged_files" only where the loss can be
        estimated from the zstd frame size, else "damaged_files_with_unknown_loss").
      max_bad_lines: unreadable lines (both rules together) tolerated (counted, skipped) over all files
        before the count becomes a DataError; 0 makes the first one fatal.
      max_bad_files: truncated or corrupt compressed files tolerated (their
        readable records are kept, the rest counted as lost) before it is a
        DataError; 0 (default) makes the first one fatal.
    """
    for path in expand_glob(pattern):
        decoded = decompress(path, _open_bytes(path))
        lines = decoded.data.split(b"\n")
        if decoded.problem:
            lines = _count_damaged_file(path, decoded, lines, counts, max_bad_files)
        for lineno, raw_line in enumerate(lines, start=1):
            if not raw_line.strip():
                continue
            try:
                text = decode_utf8(raw_line, path, lineno)
            except DataError as e:
                _count_bad_line(counts, "invalid_utf8", str(e), max_bad_lines)
                continue
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON {type(record).__name__}, not an object")  # noqa: TRY004
            except ValueError as e:
                _count_bad_line(counts, "malformed_json", f"{path}:{lineno}: malformed JSON line ({e})",
                                max_bad_lines)
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
