"""`codemix eval`: score a checkpoint on the benchmark suite, write results.json.

    codemix eval --checkpoint /tmp/run --category reasoning --limit 100 --output results.json
"""
from __future__ import annotations

import argparse
import logging
import time

# Kept here (not imported from codemix.eval.tasks, which loads seqio and
# TensorFlow) so `codemix eval --help` answers at once; a test checks they agree.
CATEGORIES = ("reasoning", "knowledge", "code")

log = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 or -1 would score nothing and write NaN)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be at least 1, got {value} (omit --limit to evaluate every example)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="training workdir (its latest checkpoint) or a model dir (model.gin + params/)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step of a workdir (default: latest)")
    parser.add_argument("--benchmarks", default="",
                        help="comma-separated benchmark or group names (e.g. arc_easy,piqa or "
                             "study_reasoning); an unknown name lists the available ones")
    parser.add_argument("--category", default=None, choices=CATEGORIES + ("perplexity",),
                        help="add every benchmark of this category; 'perplexity' measures held-out "
                             "loss and bits per byte on every family's fixed validation set")
    parser.add_argument("--sequence_length", type=int, default=None,
                        help="rows of the perplexity sets (default: the run's training length, else 512)")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="first N examples of each benchmark (N >= 1; default: all)")
    parser.add_argument("--output", required=True, help="results JSON path")
    parser.add_argument("--num_shots", type=int, default=0, help="in-context examples (default 0)")
    parser.add_argument("--fewshot_seed", type=int, default=1234, help="seed of the shot selection")
    parser.add_argument("--num_samples", type=int, default=1,
                        help="completions per code problem; >1 samples at --temperature and reports pass@k")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature for num_samples > 1")
    parser.add_argument("--batch_size", type=int, default=2,
                        help="packed rows per scoring call (2 suits a CPU; use 64+ on an accelerator)")
    parser.add_argument("--row_len", type=int, default=256, help="tokens per packed scoring row")
    parser.add_argument("--gen_batch_size", type=int, default=8, help="prompts per generation batch")
    parser.add_argument("--sandbox_timeout", type=float, default=10.0, help="wall-clock seconds per program")
    parser.add_argument("--sandbox_workers", type=int, default=2, help="programs executed in parallel")
    parser.add_argument("--unsafe_unsandboxed_execution", action="store_true",
                        help="DANGEROUS: run generated code without bubblewrap (rlimits and timeout only)")
    parser.add_argument("--save_details", default=None, help="optional JSON of per-example predictions")
    parser.add_argument("--no_resume", action="store_true",
                        help="re-evaluate every benchmark even if <output>.parts/ holds finished ones")
    from codemix.train.distributed import add_distributed_arguments

    add_distributed_arguments(parser)  # on several hosts every process runs the same command


def run(args: argparse.Namespace) -> int:
    import json

    from codemix.train.distributed import init_distributed

    init_distributed(args)
    from codemix.train.compile_cache import compilation_cache

    compilation_cache()  # this machine's JAX compilation cache, as train and experiment use
    from codemix.eval import tasks
    from codemix.eval.loading import load_model_for_eval
    from codemix.eval.runner import EvalSettings, Evaluator, format_table, write_results
    from codemix.eval.sandbox import Sandbox, SandboxUnavailable

    perplexity = args.category == "perplexity"
    listed = [b for b in args.benchmarks.split(",") if b.strip()]
    try:
        names = (tasks.resolve_names(listed, None if perplexity else args.category)
                 if listed or not perplexity else [])
    except KeyError as e:
        print(f"codemix eval: {e.args[0]}")
        return 2
    sandbox = None
    if any(tasks.get_benchmark(n).kind == "code" for n in names):
        try:  # fail before loading the model, not after generating
            sandbox = Sandbox(timeout_s=args.sandbox_timeout, workers=args.sandbox_workers,
                              unsafe_unsandboxed=args.unsafe_unsandboxed_execution)
        except SandboxUnavailable as e:
            print(f"codemix eval: cannot run code benchmarks: {e}")
            return 2
    cfg, params, vocab, info = load_model_for_eval(args.checkpoint, args.step)
    settings = EvalSettings(num_shots=args.num_shots, fewshot_seed=args.fewshot_seed,
                            row_len=args.row_len, batch_size=args.batch_size,
                            gen_batch_size=args.gen_batch_size, num_samples=args.num_samples,
                            temperature=args.temperature, progress=True)
    start = time.perf_counter()
    # Finished benchmarks are kept in <output>.parts/ so a long evaluation
    # that is interrupted resumes with the next unfinished benchmark.
    parts_dir = args.output + ".parts"
    from codemix import storage
    from codemix.train.checkpointing import absolute

    if args.no_resume and storage.path(parts_dir).is_dir():
        storage.path(parts_dir).rmtree()
    parts_key = {"checkpoint": absolute(info.path), "step": info.step,
                 "num_shots": args.num_shots, "fewshot_seed": args.fewshot_seed,
                 "num_samples": args.num_samples, "temperature": args.temperature}
    out = Evaluator(cfg, params, vocab, settings, sandbox).run_full(
        names, args.limit, run_name=info.run, step=info.step, parts_dir=parts_dir, parts_key=parts_key)
    records, seconds, details = out.records, out.seconds, out.details
    per_example = dict(out.per_example or {})
    if perplexity:
        from codemix.eval import perplexity as ppl
        from codemix.eval.loading import heldout_context

        t0 = time.perf_counter()
        docs, run_len = heldout_context(args.checkpoint)
        results = ppl.evaluate_model(cfg, params, vocab, docs, args.sequence_length or run_len or 512,
                                     args.batch_size)
        recs, pe = ppl.records(results, info.run, info.step)
        records, seconds = records + recs, {**seconds, "perplexity": time.perf_counter() - t0}
        per_example.update(pe)
    meta = {"checkpoint": info.path, "limit": args.limit, "num_shots": args.num_shots,
            "fewshot_seed": args.fewshot_seed, "num_samples": args.num_samples,
            "seconds": seconds, "total_seconds": time.perf_counter() - start}
    import jax

    if jax.process_index() != 0:  # every process holds the same gathered scores
        return 0
    write_results(args.output, records, meta, per_example)
    if args.save_details:
        storage.path(absolute(args.save_details)).write_text(json.dumps(details, indent=1))
    print(format_table(records))
    log.info("wrote %d records to %s (%.1fs)", len(records), args.output, meta["total_seconds"])
    return 0
