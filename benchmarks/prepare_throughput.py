"""Beam preparation throughput on the generated SlimPajama fixture, as JSON.

Documents/s and MB/s (raw, decompressed JSONL bytes) per worker, at 1 and 2
DirectRunner workers (multi_processing), wall time from pipeline start to the
written corpus, including worker start-up (TensorFlow import per worker); the
in-process path on the same input for comparison.

  python benchmarks/prepare_throughput.py [--shards 40] [--per_shard 200] [--workers 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def raw_bytes(root: Path) -> int:
    """Decompressed bytes of every shard (all zstd frames; a truncated one's readable part)."""
    from codemix.data import readers

    return sum(len(readers.decompress(str(f), f.read_bytes()).data) for f in sorted(root.glob("*.jsonl.zst")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=40)
    p.add_argument("--per_shard", type=int, default=200)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from codemix.data import beam_prepare, corpora, corpus
    from tests.data import beam_fixture

    root = Path(tempfile.mkdtemp(prefix="codemix_prepare_bench_"))
    planted = beam_fixture.slimpajama(root / "sp", shards=args.shards, per_shard=args.per_shard)
    raw = str(root / "sp" / "*.jsonl.zst")
    mb = raw_bytes(root / "sp") / 1e6
    docs = planted["records"]
    out = {"fixture": {"shards": args.shards, "records": docs, "raw_mb": round(mb, 2)}, "runs": []}
    options = corpus.CorpusOptions(data_dir=str(root / "ref"), raw_paths={"text": raw}, max_bad_files=1)
    t = time.perf_counter()
    corpora.get_builder("text", options).collect()
    s = time.perf_counter() - t
    out["runs"].append({"path": "in-process", "workers": 1, "seconds": round(s, 2),
                        "docs_per_s_per_worker": round(docs / s), "mb_per_s_per_worker": round(mb / s, 3)})
    for n in args.workers:
        options = corpus.CorpusOptions(data_dir=str(root / f"beam{n}"), raw_paths={"text": raw}, max_bad_files=1)
        t = time.perf_counter()
        beam_prepare.prepare("text", options, beam_prepare.BeamSettings.local(n))
        s = time.perf_counter() - t
        out["runs"].append({"path": "beam DirectRunner multi_processing", "workers": n, "seconds": round(s, 2),
                            "docs_per_s_per_worker": round(docs / s / n),
                            "mb_per_s_per_worker": round(mb / s / n, 3)})
    out["cpus"] = os.cpu_count()
    out["load_average_1min"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
