"""Data preparation: nothing is lost without a count and a message."""
import collections
import gzip
import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from codemix.data import corpora, corpus, readers
from codemix.data.readers import DataError

RECORDS = [{"text": f"record {i}: " + "the quick brown fox jumps over the lazy dog " * (i % 7 + 1)}
           for i in range(2000)]


def _jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def test_truncated_zst_is_counted_with_the_records_it_lost(tmp_path):
    full = zstandard.ZstdCompressor().compress(_jsonl(RECORDS))
    path = tmp_path / "chunk.jsonl.zst"
    path.write_bytes(full[: len(full) // 2])

    with pytest.raises(DataError, match=r"chunk\.jsonl\.zst: truncated.*records lost.*max_bad_files=0"):
        list(readers.read_jsonl(str(path), ["text"], collections.Counter()))

    counts = collections.Counter()
    rows = list(readers.read_jsonl(str(path), ["text"], counts, max_bad_files=1))
    assert 0 < len(rows) < 2000
    assert [r[2]["text"] for r in rows] == [r["text"] for r in RECORDS[: len(rows)]]
    assert counts["damaged_compressed_files"] == 1
    assert counts["malformed_json"] == 0  # the line cut in half is part of the loss, not a bad line
    lost = counts["records_lost_in_damaged_files"]
    assert abs(len(rows) + lost - 2000) < 0.1 * 2000  # the estimate from the frame's size


def test_fully_corrupt_zst_says_corrupt(tmp_path):
    full = zstandard.ZstdCompressor().compress(_jsonl(RECORDS))
    header_only = tmp_path / "header.jsonl.zst"
    header_only.write_bytes(full[:12])
    garbage = tmp_path / "garbage.jsonl.zst"
    garbage.write_bytes(full[:6] + bytes(range(256)) * 8)
    for p in (header_only, garbage):
        with pytest.raises(DataError, match=rf"{p.name}: corrupt zstd file, nothing could be decompressed"):
            list(readers.read_jsonl(str(p), ["text"], collections.Counter()))


def test_truncated_gzip_is_counted(tmp_path):
    full = gzip.compress(_jsonl(RECORDS))
    path = tmp_path / "chunk.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    counts = collections.Counter()
    rows = list(readers.read_jsonl(str(path), ["text"], counts, max_bad_files=1))
    assert 0 < len(rows) < 2000 and counts["damaged_compressed_files"] == 1
    # gzip records no size: the loss is unknown, not a number
    assert counts["damaged_files_with_unknown_loss"] == 1 and "records_lost_in_damaged_files" not in counts
    assert counts["malformed_json"] == 0


def test_complete_multi_frame_zst_reads_every_record(tmp_path):
    c = zstandard.ZstdCompressor()
    path = tmp_path / "frames.jsonl.zst"
    path.write_bytes(c.compress(_jsonl(RECORDS[:1000])) + c.compress(_jsonl(RECORDS[1000:])))
    counts = collections.Counter()
    assert len(list(readers.read_jsonl(str(path), ["text"], counts))) == 2000
    assert not counts


def _sp(i):
    return {"text": f"Paragraph {i} about rivers, " + "the water rose slowly through the night. " * 5,
            "meta": {"redpajama_set_name": "RedPajamaCommonCrawl"}}


def test_added_file_invalidates_the_prepared_corpus(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(_jsonl([_sp(i) for i in range(6)]))
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "tfds"), raw_paths={"text": str(raw / "*.jsonl")})
    first = corpora.prepare("text", options)
    before = sum(s.num_examples for s in first.info.splits.values())
    assert before == 6

    (raw / "b.jsonl").write_bytes(_jsonl([_sp(i) for i in range(6, 10)]))
    second = corpora.prepare("text", options)
    assert second.data_dir != first.data_dir
    assert sum(s.num_examples for s in second.info.splits.values()) == 10

    key = options.fingerprint("text")
    (raw / "b.jsonl").write_bytes(_jsonl([_sp(i) for i in range(6, 12)]))  # changed in place
    assert options.fingerprint("text") != key


def test_data_dir_inside_the_raw_folder_is_not_part_of_the_fingerprint(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(_jsonl([_sp(0)]))
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "tfds"), raw_paths={"text": str(tmp_path)})
    key = options.fingerprint("text")
    (tmp_path / "tfds" / "x").mkdir(parents=True)
    (tmp_path / "tfds" / "x" / "dataset_info.json").write_text("{}")
    assert options.fingerprint("text") == key


def test_stack_folders_match_case_insensitively_and_unknown_ones_are_named(tmp_path, caplog):
    for folder, n in (("Python", 3), ("RUST", 2), ("Klingon", 1)):
        (tmp_path / folder).mkdir()
        table = pa.table({"content": [f"// {folder} file {i}\nfn main() {{}}\n" for i in range(n)],
                          "size": np.arange(n)})
        pq.write_table(table, tmp_path / folder / "data-0.parquet")
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "tfds"), raw_paths={"code_web": str(tmp_path)})
    with caplog.at_level(logging.WARNING):
        docs, stats = corpora.get_builder("code_web", options).collect()
    kept = docs["train"] + docs["validation"]
    assert sorted(d.language for d in kept) == ["python"] * 3 + ["rust"] * 2
    assert stats["dropped"]["language_not_in_study:Klingon"] == 1
    assert "'Klingon'" in caplog.text and "'python'" in caplog.text  # named, with the known names
