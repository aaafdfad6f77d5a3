"""`codemix data prepare` on compressed files cut short: the stats count what was
lost where the file says how much there was, and say "unknown" where it doesn't."""
import gzip
import io
import json
import subprocess
import sys

import pytest
import zstandard

from tests.train.helpers import REPO, env

RECORDS = [{"text": f"Paragraph {i} about rivers, " + "the water rose slowly through the night. " * (i % 5 + 1),
            "meta": {"redpajama_set_name": "RedPajamaCommonCrawl"}} for i in range(3000)]
RAW = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()


def _streamed_zst() -> bytes:
    """What a streaming compressor writes (zstd -c, `zstd < in > out`): no size in the frame header."""
    buf = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(buf, closefd=False) as w:
        w.write(RAW)
    return buf.getvalue()


def _prepare(tmp_path, pattern):
    cmd = [sys.executable, "-m", "codemix.main", "--log_level", "WARNING", "data", "prepare", "--family", "text",
           "--raw_path", f"text={pattern}", "--gin_param", "CorpusOptions.max_bad_files=2",
           "--gin_param", f"CorpusOptions.data_dir='{tmp_path / 'tfds'}'", "--json"]
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["text"], proc.stderr


@pytest.mark.slow  # a subprocess that prepares a corpus (~15 s)
def test_truncated_files_count_their_loss_or_say_it_is_unknown(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    zst, gz = _streamed_zst(), gzip.compress(RAW)
    assert zstandard.frame_content_size(zst) == -1  # the case of the issue: the frame records no size
    (raw / "a.jsonl.zst").write_bytes(zst[: int(len(zst) * 0.6)])
    (raw / "b.jsonl.gz").write_bytes(gz[: len(gz) // 2])
    stats, err = _prepare(tmp_path, str(raw / "*"))
    dropped = stats["dropped"]
    assert stats["documents_read"] < 2 * len(RECORDS) - 2000  # over 1,000 records of each file were lost
    assert dropped["damaged_compressed_files"] == 2
    assert dropped["damaged_files_with_unknown_loss"] == 2
    assert "records_lost_in_damaged_files" not in dropped  # never a made-up count (was 1 per file)
    assert dropped["undecoded_compressed_bytes_in_damaged_files"] > 0  # the zstd frame's incomplete block
    for name in ("a.jsonl.zst", "b.jsonl.gz"):
        line = next(x for x in err.splitlines() if f"{name}: truncated" in x)
        assert "records lost: unknown" in line and "the rest of the stream is missing" in line

    # A one-shot .zst records its size in the frame header: the loss is estimated.
    full = zstandard.ZstdCompressor().compress(RAW)
    (raw / "c.jsonl.zst").write_bytes(full[: len(full) // 2])
    stats, _ = _prepare(tmp_path, str(raw / "c.jsonl.zst"))
    lost, read = stats["dropped"]["records_lost_in_damaged_files"], stats["documents_read"]
    assert "damaged_files_with_unknown_loss" not in stats["dropped"]
    assert abs(read + lost - len(RECORDS)) < 0.1 * len(RECORDS)
