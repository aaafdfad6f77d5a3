"""Generated raw corpora shaped like SlimPajama (.jsonl.zst shards) and The Stack
(Parquet per language folder), with the damage real downloads have.

Used by tests/data/test_beam_prepare.py and benchmarks/prepare_throughput.py.
Deterministic: the same arguments write the same bytes.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

WORDS = ["river", "village", "morning", "hill", "bridge", "harvest", "winter", "market", "letter", "garden", "teacher", "station", "summer", "window", "history", "council", "evening", "journey", "mountain", "forest", "library", "music", "doctor", "silver", "ocean", "island", "kingdom", "painter", "theory", "lantern", "meadow"]
CODE = "def f{i}(x):\n    return x * {i} + 1\n\nfor k in range({i}):\n    print(f{i}(k))\n"
SETS = ("RedPajamaCommonCrawl", "RedPajamaC4", "RedPajamaWikipedia", "RedPajamaBook", "RedPajamaArXiv")


def _prose(rng: random.Random, words: int) -> str:
    sentences = []
    while words > 0:
        n = min(words, rng.randint(8, 16))
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + ".")
        words -= n
    return " ".join(sentences)


def _record(text: str, name: str) -> dict:
    return {"text": text, "meta": {"redpajama_set_name": name}}


def slimpajama(root: Path, shards: int = 40, per_shard: int = 50, words: int = 120, seed: int = 0,
               corrupt_shard: int | None = 7) -> dict:
    """Write `shards` .jsonl.zst files under `root`; returns what was planted.

    Each shard: prose records of several sets, a GitHub and a StackExchange
    record (removed sets), a code-heavy CommonCrawl record (code detector),
    an empty record, a copy of a record from an earlier shard (cross-shard
    duplicate), in every fifth shard a malformed line, and in shards 3, 13,
    23, ... a line that is not UTF-8. Shard
    `corrupt_shard` is cut in the middle of its last zstd frame.
    """
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    planted = {"malformed": 0, "invalid_utf8": 0, "duplicates": 0, "records": 0}
    earlier: list[str] = []
    for s in range(shards):
        lines = []
        for i in range(per_shard):
            lines.append(json.dumps(_record(_prose(rng, words), SETS[(s + i) % len(SETS)])))
        lines.append(json.dumps(_record(CODE.format(i=s) * 3, "RedPajamaGithub")))
        lines.append(json.dumps(_record("How do I sort a list? " + _prose(rng, 30), "RedPajamaStackExchange")))
        lines.append(json.dumps(_record(CODE.format(i=s + 100) * 4, "RedPajamaCommonCrawl")))
        lines.append(json.dumps(_record("   \n", "RedPajamaC4")))
        if earlier:
            lines.append(json.dumps(_record(rng.choice(earlier), "RedPajamaC4")))
            planted["duplicates"] += 1
        if s % 5 == 0:
            lines.append('{"text": "cut off in the middle')
            planted["malformed"] += 1
        if s % 10 == 3:  # a Latin-1 byte: not UTF-8 (written through surrogateescape)
            lines.append('{"text": "caf\udce9 au lait"}')
            planted["invalid_utf8"] += 1
        earlier += [json.loads(line)["text"] for line in lines[:3]]
        rng.shuffle(lines)
        planted["records"] += len(lines)
        # Several frames per file, as streaming writers produce; a cut in the
        # last one keeps the earlier frames readable.
        step = max(1, len(lines) // 4)
        frames = [zstandard.ZstdCompressor().compress(("\n".join(lines[i:i + step]) + "\n").encode("utf-8", "surrogateescape"))
                  for i in range(0, len(lines), step)]
        if s == corrupt_shard:
            frames[-1] = frames[-1][: len(frames[-1]) // 2]
        (root / f"chunk_{s:04d}.jsonl.zst").write_bytes(b"".join(frames))
    return planted


def stack(root: Path, files_per_language: int = 3, rows: int = 40, seed: int = 1) -> None:
    """The Stack: `<root>/<language>/data-N.parquet` (`content`, `size`), with
    null contents, duplicates across files and a folder outside the study."""
    rng = random.Random(seed)
    for lang, ext in (("python", "py"), ("rust", "rs"), ("Java", "java"), ("klingon", "tlh")):
        (root / lang).mkdir(parents=True, exist_ok=True)
        for f in range(files_per_language):
            content = [f"// {lang} {ext} file {f}.{r}\n" + CODE.format(i=rng.randint(0, 10**6)) for r in range(rows)]
            content[0] = f"// shared header of every {lang} file\n"  # duplicate across files
            content[1] = None
            pq.write_table(pa.table({"content": content, "size": list(range(rows))}),
                           root / lang / f"data-{f:05d}.parquet")
