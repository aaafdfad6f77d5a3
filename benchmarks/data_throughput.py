"""Data pipeline throughput vs raw SentencePiece encoding, per core, as JSON.

Per core means tokens per CPU-second of this process (user + system time), so
the number does not depend on how many cores tf.data happens to use. The raw
baseline encodes the same documents (the mixture's tasks, train split) with
the same SentencePiece model in one thread. Target: pipeline >= 50% of raw.

  python benchmarks/data_throughput.py [--mixture balanced] [--batches 300]
      [--gin_param "CorpusOptions.data_dir='...'"]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixture", default="balanced")
    p.add_argument("--batches", type=int, default=2000, help="long enough to span several passes over the local corpora (each task tokenizes a window of documents at a time).")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--sequence_length", type=int, default=512)
    p.add_argument("--raw_docs", type=int, default=400, help="documents per task for the raw baseline.")
    p.add_argument("--gin_param", action="append", default=[])
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import sentencepiece as spm

    from codemix import config
    from codemix.data import pipeline, tasks
    from codemix.data.vocab import VOCABULARY

    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    config.parse([], args.gin_param, finalize=False)
    it = pipeline.make_train_iterator(mixture=args.mixture, sequence_length=args.sequence_length,
                                      batch_size=args.batch_size, process_index=0, process_count=1)
    for _ in range(10):  # warm up: graph tracing, file opening, shuffle buffers
        next(it)
    t0, c0 = time.time(), cpu_seconds()
    tokens = 0
    for _ in range(args.batches):
        tokens += int(next(it)["decoder_loss_weights"].sum())
    wall, cpu = time.time() - t0, cpu_seconds() - c0

    texts = []
    for name in it.source_names:
        ds = tasks._dataset_fn("train", False, name=name).take(args.raw_docs)
        texts += [x["text"].decode("utf-8") for x in ds.as_numpy_iterator()]
    sp = spm.SentencePieceProcessor(model_file=VOCABULARY.sentencepiece_model_file, num_threads=1)
    t1, c1 = time.time(), cpu_seconds()
    raw_tokens = sum(len(ids) + 1 for ids in sp.encode(texts, num_threads=1))
    raw_wall, raw_cpu = time.time() - t1, cpu_seconds() - c1

    pipe_per_core = tokens / cpu
    raw_per_core = raw_tokens / raw_cpu
    print(json.dumps({
        "mixture": args.mixture, "sequence_length": args.sequence_length, "batch_size": args.batch_size,
        "batches": args.batches, "cores_available": os.cpu_count(),
        "pipeline_tokens": tokens, "pipeline_tokens_per_s_wall": round(tokens / wall),
        "pipeline_tokens_per_cpu_s": round(pipe_per_core),
        "raw_sentencepiece_tokens": raw_tokens, "raw_sentencepiece_tokens_per_s_wall": round(raw_tokens / raw_wall),
        "raw_sentencepiece_tokens_per_cpu_s": round(raw_per_core),
        "pipeline_over_raw_per_core": round(pipe_per_core / raw_per_core, 3),
        "target": 0.5,
    }))


if __name__ == "__main__":
    main()
