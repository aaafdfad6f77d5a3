"""HellaSwag scoring throughput of the tiny model: packed batches vs one at a time.

    python benchmarks/eval_throughput.py [--examples 200] [--checkpoint DIR]

Both paths compute the same log-likelihoods (checked below). Compilation is
excluded: each path first runs on every shape it will use. The two paths are
timed alternately for `--rounds` rounds and the best round of each is kept,
so load from other processes on a shared machine biases neither side. Prints
one JSON object: examples/s of each path, the speedup and the packing density.
Without --checkpoint the `tiny` model (gin/models/tiny.gin) is randomly
initialised (throughput does not depend on the weights) with --vocab
"codemix" (default: the 8k SentencePiece vocabulary the demo experiment trains
with; trained and cached on first use) or "byte" (gin/runs/tiny_cpu.gin's
byte vocabulary, about 4x more tokens per example).

The packed path shares each question's context between its choices and
projects only scored slots to the vocabulary (codemix/eval/scoring.py); the
naive path runs each (context, choice) pair alone with full logits.
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
    parser.add_argument("--vocab", choices=("codemix", "byte"), default="codemix")
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
        if args.vocab == "byte":
            import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
            config.parse(["gin/runs/tiny_cpu.gin"], finalize=False)
            vocab = seqio.ByteVocabulary()
        else:
            from codemix.data.vocab import VOCABULARY

            config.parse(["gin/models/tiny.gin"], finalize=False)
            vocab = VOCABULARY
        cfg = ModelConfig()
        gin.clear_config()
        params = jax.jit(lambda: decoder.init_params(cfg))()

    examples = tasks.load_examples("hellaswag", limit=args.examples)
    ev = Evaluator(cfg, params, vocab)
    requests = [scoring.Request(tuple(ev.encode(ctx)), tuple(ev.encode(cont)))
                for ex in examples for ctx, cont in zip(ex["contexts"], ex["continuations"])]

    # Warm up: compile every shape each path uses.
    scoring.score_packed(cfg, params, requests, args.row_len, args.batch_size)
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

    groups, _ = scoring.group_requests(requests, 2048)
    fits = [i for g in groups if g.size <= args.row_len for i in g.members]
    arrays, _, _ = scoring.pack([requests[i] for i in fits], args.row_len)
    density = float((arrays["segment_ids"] > 0).mean())
    naive_tokens = sum(len(r.context) + len(r.continuation) - 1 for r in requests)
    packed_tokens = sum(g.size for g in groups)
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
        "vocab": args.vocab if not args.checkpoint else "checkpoint's",
        "tokens_naive": naive_tokens,
        "tokens_packed_after_context_sharing": packed_tokens,
        "requests_in_base_rows": len(fits),
        "base_rows": int(arrays["inputs"].shape[0]),
        "row_len": args.row_len,
        "batch_size": args.batch_size,
        "packing_density_base_rows": round(density, 3),
        "max_abs_loglik_diff": float(np.max(np.abs(packed - naive))),
    }, indent=1))


if __name__ == "__main__":
    main()
