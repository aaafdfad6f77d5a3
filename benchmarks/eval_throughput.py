"""HellaSwag scoring throughput of the tiny model: packed batches vs one at a time.

    python benchmarks/eval_throughput.py [--examples 200] [--checkpoint DIR]

Both paths compute the same log-likelihoods (checked below). Compilation is
excluded: each path first runs on every shape it will use. The two paths are
timed alternately for `--rounds` rounds and the best round of each is kept,
so load from other processes on a shared machine biases neither side. Prints
one JSON object: examples/s of each path, the speedup and the packing density.
Without --checkpoint the tiny CPU model (gin/experiments/tiny_cpu.gin) is
randomly initialised; throughput does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="HellaSwag examples to score")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (best kept)")
    parser.add_argument("--checkpoint", default=None, help="training workdir or model dir (default: random tiny)")
    parser.add_argument("--row_len", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=2)
    args = parser.parse_args()

    import gin
    import seqio

    from codemix import config
    from codemix.eval import scoring, tasks
    from codemix.eval.runner import Evaluator
    from codemix.model import decoder
    from codemix.model.config import ModelConfig

    if args.checkpoint:
        from codemix.eval.loading import load_model_for_eval

        cfg, params, vocab, _ = load_model_for_eval(args.checkpoint)
    else:
        config.parse(["gin/experiments/tiny_cpu.gin"], finalize=False)
        cfg = ModelConfig()
        gin.clear_config()
        params = jax.jit(lambda: decoder.init_params(cfg))()
        vocab = seqio.ByteVocabulary()

    examples = tasks.load_examples("hellaswag", limit=args.examples)
    ev = Evaluator(cfg, params, vocab)
    requests = [scoring.Request(tuple(ev.encode(ctx)), tuple(ev.encode(cont)))
                for ex in examples for ctx, cont in zip(ex["contexts"], ex["continuations"])]

    # Warm up: compile every shape each path uses.
    by_bucket = {}
    for r in requests:  # one request per row length, so every shape compiles
        n = len(r.context) + len(r.continuation) - 1
        by_bucket.setdefault(next((L for L in scoring.row_lengths(args.row_len, 2048) if n <= L), 0), r)
    scoring.score_packed(cfg, params, list(by_bucket.values()), args.row_len, args.batch_size)
    widths = {}
    for r in requests:
        n = len(r.context) + len(r.continuation) - 1
        widths.setdefault(max(64, -(-n // 64) * 64), r)
    scoring.score_naive(cfg, params, list(widths.values()))

    packed_times, naive_times = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        packed = scoring.score_packed(cfg, params, requests, args.row_len, args.batch_size)
        packed_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        naive = scoring.score_naive(cfg, params, requests)
        naive_times.append(time.perf_counter() - t)
    packed_s, naive_s = min(packed_times), min(naive_times)

    fits = [r for r in requests if len(r.context) + len(r.continuation) - 1 <= args.row_len]
    arrays, _, _ = scoring.pack(fits, args.row_len)
    density = float((arrays["segment_ids"] > 0).mean())
    print(json.dumps({
        "benchmark": "hellaswag",
        "examples": len(examples),
        "requests": len(requests),
        "model_params": decoder.param_count(params),
        "device": str(jax.devices()[0]),
        "packed_examples_per_s": round(len(examples) / packed_s, 2),
        "naive_examples_per_s": round(len(examples) / naive_s, 2),
        "speedup": round(naive_s / packed_s, 2),
        "packed_seconds_per_round": [round(x, 2) for x in packed_times],
        "naive_seconds_per_round": [round(x, 2) for x in naive_times],
        "requests_in_base_rows": len(fits),
        "base_rows": int(arrays["inputs"].shape[0]),
        "row_len": args.row_len,
        "batch_size": args.batch_size,
        "packing_density_base_rows": round(density, 3),
        "max_abs_loglik_diff": float(np.max(np.abs(packed - naive))),
    }, indent=1))


if __name__ == "__main__":
    main()
