"""The `codemix` command line. Each subcommand lives in its own module, which
provides `add_arguments(parser)` and `run(args) -> int`; they are imported only
when used."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = {
    "train": ("codemix.train.cli", "train (or resume) one run from gin files"),
    "model-info": ("codemix.model.cli", "parameter count and FLOPs per token of a model gin"),
    "data": ("codemix.data.cli", "prepare corpora, inspect mixtures, check contamination"),
    "vocab": ("codemix.data.vocab_cli", "train a SentencePiece vocabulary on a mixture"),
    "experiment": ("codemix.experiments.cli", "run the study's experiment matrix (or a part of it)"),
    "eval": ("codemix.eval.cli", "score a checkpoint on the benchmark suite, write results JSON"),
    "report": ("codemix.analysis.cli", "tables and plots of an experiment workdir -> DIR/report.md"),
    "import": ("codemix.model.import_cli", "import a GGUF or HF Llama checkpoint (or export one to HF)"),
    "launch": ("codemix.launch.cli", "run a command on every worker of a TPU VM or a SLURM GPU job"),
    "plan": ("codemix.train.plan_cli", "per-device memory, FLOPs, steps and wall time of a run's gin"),
    "judge": ("codemix.eval.judge_cli", "pairwise LLM-as-a-judge win rates of a candidate against a baseline"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="codemix", description=__doc__.splitlines()[0])
    parser.add_argument("--log_level", default="INFO", help="Python logging level.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    broken = {}
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        try:
            mod = importlib.import_module(module)
        except ImportError as e:  # one broken command must not take the others down
            broken[name] = f"{module}: {e}"
            continue
        mod.add_arguments(p)
        modules[name] = mod
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        # Orbax and TF log every checkpoint phase at INFO through absl.
        logging.getLogger("absl").setLevel(logging.WARNING)
    from codemix.config import ConfigError

    if args.command in broken:
        print(f"codemix: the {args.command!r} command can't be loaded ({broken[args.command]}); "
              f"reinstall with: pip install -e .", file=sys.stderr)
        return 2

    try:
        return int(modules[args.command].run(args) or 0)
    except ConfigError as e:
        print(f"codemix: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as e:
        # User-fixable problems carry their own message; show it without a
        # traceback unless debugging.
        if logging.getLogger().level <= logging.DEBUG:
            raise
        print(f"codemix: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
