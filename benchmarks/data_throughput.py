"""Data pipeline throughput vs raw SentencePiece encoding, per core, as JSON.

Per core means tokens per CPU-second of this process (user + system time), so
the number does not depend on how many cores tf.data happens to use. The raw
baseline encodes the same documents (the mixture's tasks, train split) with
the same SentencePiece model in one thread. Target: pipeline >= 50% of raw.

The cached path (make_train_iterator.cache_dir, `codemix data cache`) reads the
same batches from the tokenized cache (built first under --cache_dir when it
is not there). Its tokens per CPU-second are set against what one host of a
`470m` run on v4-32 consumes (BATCH_SIZE=512, SEQ_LEN=2048 as in the README's
plan command), with the planner's step time at 40% MFU. Target: cached >= 3x.

  python benchmarks/data_throughput.py [--mixture balanced] [--batches 300]
      [--cache_dir DIR] [--gin_param "CorpusOptions.data_dir='...'"]
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


def consumed_per_host(model_gin: str = "gin/models/470m.gin", accelerator: str = "v4-32",
                      batch: int = 512, seq_len: int = 2048, mfu: float = 0.4) -> dict:
    """Tokens/s one host of that run consumes: global tokens per step over the
    planner's step time at `mfu`, divided by the accelerator's hosts."""
    import gin
    from codemix.commands.plan import PEAK
    from codemix.launch.tpu import generation, topology
    from codemix.model.config import ModelConfig
    from codemix.train import planner

    top = topology(accelerator)
    with gin.unlock_config():
        gin.parse_config_file(model_gin)
        cfg = ModelConfig()
    p = planner.plan(cfg, global_batch=batch, seq_len=seq_len, mesh=planner.mesh_shape(num_devices=top.devices),
                     peak_flops=PEAK[generation(accelerator)], mfu=mfu)
    return {"run": f"{os.path.basename(model_gin)[:-4]} on {accelerator}", "hosts": top.hosts,
            "batch": batch, "seq_len": seq_len, "mfu": mfu, "step_time_s": round(p.step_time_s, 4),
            "tokens_per_s_per_host": round(batch * seq_len / p.step_time_s / top.hosts)}


def timed(it, batches: int) -> tuple[int, float, float]:
    for _ in range(10):  # warm up: graph tracing, file opening, shuffle buffers
        next(it)
    t0, c0 = time.time(), cpu_seconds()
    tokens = 0
    for _ in range(batches):
        tokens += int(next(it)["decoder_loss_weights"].sum())
    return tokens, time.time() - t0, cpu_seconds() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixture", default="balanced")
    p.add_argument("--batches", type=int, default=2000, help="long enough to span several passes over the local corpora (each task tokenizes a window of documents at a time).")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--sequence_length", type=int, default=512)
    p.add_argument("--raw_docs", type=int, default=400, help="documents per task for the raw baseline.")
    p.add_argument("--gin_param", action="append", default=[])
    p.add_argument("--cache_dir", default=None, help="tokenized cache root (default: <data_dir>/../bench_cache); "
                                                     "built there first when missing.")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import sentencepiece as spm

    from codemix import config
    from codemix.data import pipeline, tasks
    from codemix.data.vocab import VOCABULARY

    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    config.parse([], args.gin_param, finalize=False)
    kw = {"mixture": args.mixture, "sequence_length": args.sequence_length, "batch_size": args.batch_size,
          "process_index": 0, "process_count": 1}
    it = pipeline.make_train_iterator(**kw)
    tokens, wall, cpu = timed(it, args.batches)

    from codemix.data import beam_cli, beam_prepare, corpus

    root = args.cache_dir or os.path.join(os.path.dirname(corpus.CorpusOptions().data_dir.rstrip("/")), "bench_cache")
    built = beam_cli.cache_mixture(args.mixture, root, beam_prepare.BeamSettings())
    cached_tokens, cached_wall, cached_cpu = timed(pipeline.make_train_iterator(**kw, cache_dir=root), args.batches)
    need = consumed_per_host()

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
        "cache_dir": root, "cache": built,
        "cached_tokens_per_s_wall": round(cached_tokens / cached_wall),
        "cached_tokens_per_cpu_s": round(cached_tokens / cached_cpu),
        "cached_over_on_the_fly_per_core": round((cached_tokens / cached_cpu) / pipe_per_core, 3),
        "consumed_per_host": need,
        "cached_per_core_over_consumed_per_host": round(cached_tokens / cached_cpu / need["tokens_per_s_per_host"], 3),
        "cached_target": 3.0,
    }))


if __name__ == "__main__":
    main()
