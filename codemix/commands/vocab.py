"""`codemix vocab train --mixture M --size N --output PATH`: a SentencePiece
model trained on a sample of mixture M in proportion to its token shares."""
from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="vocab_command", required=True, metavar="SUBCOMMAND")
    p = sub.add_parser("train", help="train a SentencePiece vocabulary on a mixture",
                       epilog="example:\n  codemix vocab train --mixture balanced --size 16384 --output v.model")
    p.add_argument("--mixture", required=True, help="mixture name (gin/mixtures/<name>.gin)")
    p.add_argument("--size", type=int, default=8192, help="vocabulary size (pieces).")
    p.add_argument("--output", required=True, help="model path to write (local or gs://).")
    p.add_argument("--sample_bytes", type=int, default=4_000_000, help="bytes of text to train on.")
    p.add_argument("--gin_file", action="append", default=[], help="gin files (e.g. CorpusOptions).")
    p.add_argument("--gin_param", action="append", default=[], help="gin bindings.")


def run(args) -> int:
    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    from codemix import config
    from codemix.data import vocab
    from codemix.data.readers import DataError
    config.parse(args.gin_file, args.gin_param, finalize=False)
    try:
        stats = vocab.train_for_mixture(args.mixture, args.size, args.output, args.sample_bytes)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"codemix vocab: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0
