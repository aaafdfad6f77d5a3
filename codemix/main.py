"""The `codemix` command line.

Each command lives in its own module in codemix/commands/, named after it,
which provides `add_arguments(parser)` and `run(args) -> int`. Only the module
of the command being run is imported, so `codemix --help` and a mistyped
command answer at once, without JAX or TensorFlow. The C++ start-up logs of TensorFlow and XLA (oneDNN, cudart,
"All log messages before absl::InitializeLog()") are silenced unless
`--log_level debug`: TF_CPP_MIN_LOG_LEVEL=2 is set before any command module
is imported, and the lines TensorFlow's libraries print while they load, which
no setting reaches, are filtered out of stderr during `import tensorflow`.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import threading

DESCRIPTION = "codemix: how code in a pre-training mixture changes what a language model can do."
EPILOG = """\
examples:
  codemix experiment run gin/experiments/demo.gin --workdir runs/demo   the study at laptop scale
  codemix train --gin_file gin/runs/tiny_cpu.gin --workdir runs/a --gin_param TRAIN_STEPS=60
  codemix COMMAND --help                                                 a command's flags

gin files are found in the current directory, then among the ones shipped with codemix
(gin/models, gin/runtime, gin/mixtures, gin/stages, gin/experiments)."""

# name: (module, one-line help, epilog naming the key flags with an example)
COMMANDS = {
    "train": ("codemix.commands.train", "train (or resume) one run from gin files", """\
key flags: --gin_file (repeatable, later files override earlier ones), --gin_param NAME=VALUE
(repeatable), --workdir (an existing one is resumed from its latest checkpoint).
example:
  codemix train --gin_file gin/runs/tiny_cpu.gin --workdir runs/a --gin_param TRAIN_STEPS=60"""),
    "model-info": ("codemix.commands.model_info", "parameter count and FLOPs per token of a model gin", """\
key flags: --gin_file (a model gin), --seq_len (tokens, for the attention FLOPs), --json.
example:
  codemix model-info --gin_file gin/models/470m.gin --seq_len 2048"""),
    "data": ("codemix.commands.data", "prepare corpora, inspect mixtures, check contamination", """\
key flags: inspect MIXTURE --batches N; contamination --mixture M; --gin_file/--gin_param; --json.
examples:
  codemix data prepare
  codemix data inspect balanced --batches 1000
  codemix data contamination --mixture quality_synthetic"""),
    "vocab": ("codemix.commands.vocab", "train a SentencePiece vocabulary on a mixture", """\
key flags: train --mixture M --size N (pieces) --output PATH.
example:
  codemix vocab train --mixture balanced --size 16384 --output v.model"""),
    "experiment": ("codemix.commands.experiment", "run the study's experiment matrix (or a part of it)", """\
key flags: run GIN_FILE --workdir DIR, --only VARIANT..., --dry_run (print the plan), --gin_param, --run_param.
examples:
  codemix experiment run gin/experiments/demo.gin --workdir runs/demo --dry_run
  codemix experiment run gin/experiments/demo.gin --workdir runs/demo"""),
    "eval": ("codemix.commands.eval", "score a checkpoint on the benchmark suite, write results JSON", """\
key flags: --checkpoint (workdir or model dir), --benchmarks a,b / --category C, --limit N, --output.
example:
  codemix eval --checkpoint runs/a --category reasoning --limit 100 --output results.json"""),
    "report": ("codemix.commands.report", "tables and plots of an experiment workdir -> DIR/report.md", """\
key flags: DIR (an experiment workdir), --baseline VARIANT, --resamples N (bootstrap).
example:
  codemix report runs/demo --baseline text_only"""),
    "import": ("codemix.commands.import_", "import a GGUF or HF Llama checkpoint (or export one to HF)", """\
key flags: --from (a .gguf, an HF dir, or a codemix model dir), --output DIR, --export_hf DIR, --overwrite.
examples:
  codemix import --from SmolLM2-135M-Instruct.Q4_1.gguf --output /tmp/smollm2
  codemix import --from /tmp/smollm2 --export_hf /tmp/smollm2_hf"""),
    "launch": ("codemix.commands.launch", "run a command on every worker of a TPU VM or a SLURM GPU job", """\
key flags: tpu --name --zone --accelerator; slurm --nodes --gpus_per_node; --dry_run; -- COMMAND.
examples:
  codemix launch tpu --name my-tpu --zone us-central2-b --accelerator v4-32 --dry_run \\
      -- codemix train --gin_file gin/runs/tiny_cpu.gin --workdir runs/a
  codemix launch slurm --nodes 2 --gpus_per_node 8 --dry_run \\
      -- codemix train --gin_file gin/runs/tiny_cpu.gin --workdir runs/a"""),
    "plan": ("codemix.commands.plan", "per-device memory, FLOPs, steps and wall time of a run's gin", """\
key flags: --gin_file (repeatable), --accelerator v4-32 or --devices N, --gpu h100, --mfu, --json.
example:
  codemix plan --gin_file gin/runs/tiny_cpu.gin --accelerator v4-32"""),
    "judge": ("codemix.commands.judge", "pairwise LLM-as-a-judge win rates of a candidate against a baseline", """\
key flags: --candidate, --baseline (workdirs or model dirs), --judge-url or --local_judge, --output.
example:
  codemix judge --candidate runs/code --baseline runs/text --local_judge --limit 8 --output judge.json"""),
    "law": ("codemix.commands.law", "fit mixture laws to an experiment's runs, propose the next mixture", """\
key flags: fit DIR --target T (repeatable) --form exp|linear|loglinear --json; propose DIR --objective O
--output gin/mixtures/NAME.gin --explore K.
examples:
  codemix law fit runs/demo --target val/text/bpb --target reasoning/prob_correct
  codemix law propose runs/demo --objective "min val/text/bpb; val/code_web/bpb <= 2.5" \\
      --output gin/mixtures/law_opt.gin --explore 2"""),
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Parser(argparse.ArgumentParser):
    """Keeps the line breaks of descriptions and epilogs; nested subparsers inherit it."""

    def __init__(self, *args, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def _early_options(argv: list[str]) -> tuple[str | None, str]:
    """(the command named on the line, the --log_level value), before argparse runs."""
    command, level, i = None, "INFO", 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--log_level" and i + 1 < len(argv):
            level, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--log_level="):
            level = arg.split("=", 1)[1]
        elif not arg.startswith("-"):
            command = arg
            break
        i += 1
    return command, level.upper()


# Lines TensorFlow's shared libraries write to file descriptor 2 while they
# load: C++ static initialisers run before TF_CPP_MIN_LOG_LEVEL or absl can be
# set (TensorFlow >= 2.19 ignores the variable there), plus the cuInit failure
# of a machine without an NVIDIA driver.
_TF_START_UP_NOISE = re.compile(
    r"absl::InitializeLog\(\)|cudart_stub\.cc|Could not find cuda drivers|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc|oneDNN custom operations"
    r"|cpu_feature_guard|rebuild TensorFlow with the appropriate compiler flags|TF-TRT Warning")


@contextlib.contextmanager
def _filtered_stderr_fd(noise: re.Pattern):
    """Pass file descriptor 2 through a pipe, dropping the lines that match `noise`."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not noise.search(line.decode(errors="replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        thread.join(timeout=5)
        os.close(saved)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first `import tensorflow` with its start-up lines filtered out of stderr."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec_module(module):
            with _filtered_stderr_fd(_TF_START_UP_NOISE):
                exec_module(module)
                # Enumerating devices now (milliseconds, initialises no GPU) moves the
                # cuInit probe of a GPU-less machine into the filtered window.
                with contextlib.suppress(Exception):
                    module.config.list_physical_devices("GPU")

        spec.loader.exec_module = quiet_exec_module
        return spec


def quiet_libraries(debug: bool) -> None:
    """Silence (or, when debugging, keep) the C++ start-up logs of TensorFlow and XLA.

    Takes effect only before TensorFlow / jaxlib are imported; variables the
    user set win.
    """
    # 0 = everything, 2 = errors only (JAX's own default is 1): hides the INFO
    # and WARNING lines TF and XLA log after they have loaded.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "2")
    if debug:
        return
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        # Orbax and TF log every checkpoint phase at INFO through absl.
        logging.getLogger("absl").setLevel(logging.WARNING)


def build_parser(command: str | None = None):
    """The parser; only `command`'s module is imported and adds its flags.

    Returns (parser, module or None, import error message or None).
    """
    parser = _Parser(prog="codemix", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--log_level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="Python logging level (default INFO); debug also shows TensorFlow/XLA start-up logs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module, broken = None, None
    for name, (module_name, help_text, epilog) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                           epilog=epilog)
        if name != command:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:  # one broken command must not take the others down
            broken = f"{module_name}: {e}"
            continue
        module.add_arguments(p)
    return parser, module, broken


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command, level = _early_options(argv)
    quiet_libraries(debug=level == "DEBUG")
    parser, module, broken = build_parser(command if command in COMMANDS else None)
    if broken:
        print(f"codemix: the {command!r} command can't be loaded ({broken}); "
              f"reinstall with: pip install -e .", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    from codemix.errors import ConfigError

    try:
        rc = int(module.run(args) or 0)
    except ConfigError as e:
        print(f"codemix: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, KeyError) as e:
        # User-fixable problems carry their own message; show it without a
        # traceback unless debugging.
        if logging.getLogger().level <= logging.DEBUG:
            raise
        # gin appends "In call to configurable 'train' (<function ...>)" to errors raised inside a configurable.
        message = re.sub(r"\n\s*In call to configurable .*\Z", "", str(e), flags=re.DOTALL)
        print(f"codemix: error: {message}", file=sys.stderr)
        return 2
    distributed = sys.modules.get("codemix.train.distributed")
    if distributed is not None:
        distributed.leave_distributed(rc)  # returns only if this process joined no job
    return rc


if __name__ == "__main__":
    sys.exit(main())
