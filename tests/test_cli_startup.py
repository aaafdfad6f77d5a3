"""`codemix --help` and argument errors: fast, quiet, and free of JAX/TensorFlow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from codemix import main as codemix_main

BACKENDS = ("jax", "jaxlib", "tensorflow", "flax", "orbax", "seqio")

# Runs codemix.main.main(ARGV) in a fresh interpreter, then reports its exit
# code, which backends it imported and what it printed.
PROBE = """
import contextlib, io, json, sys
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        from codemix.main import main
        rc = main(json.loads(sys.argv[1]))
    except SystemExit as e:
        rc = e.code
print(json.dumps({"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(),
                  "imported": sorted(m for m in BACKENDS if m in sys.modules)}))
""".replace("BACKENDS", repr(BACKENDS))


def probe(*argv: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(argv))], capture_output=True,
                          text=True, env=env, timeout=120, check=True)
    result = json.loads(proc.stdout.splitlines()[-1])
    result["seconds"] = time.perf_counter() - start
    result["process_stderr"] = proc.stderr
    return result


def test_help_imports_neither_jax_nor_tensorflow():
    r = probe("--help")
    assert r["rc"] == 0
    assert r["imported"] == []
    assert r["process_stderr"] == ""  # no library start-up noise
    assert codemix_main.DESCRIPTION in r["stdout"]
    for name in codemix_main.COMMANDS:
        assert name in r["stdout"]
    # Well under a second on an idle core; the bound leaves room for a busy CI machine.
    assert r["seconds"] < 5, r["seconds"]


def test_argument_errors_answer_without_backends():
    for argv in (["no-such-command"], ["train", "--workdir", "w"], ["experiment", "run"]):
        r = probe(*argv)
        assert r["rc"] == 2, argv
        assert "error:" in r["stderr"], argv
        assert r["imported"] == [], (argv, r["imported"])


# `codemix eval` lists the benchmarks in its help, so it imports seqio and TensorFlow.
@pytest.mark.parametrize("argv", [pytest.param([name], marks=pytest.mark.slow) if name == "eval" else [name]
                                  for name in codemix_main.COMMANDS] + [
    ["experiment", "run"], ["vocab", "train"], ["data", "inspect"], ["launch", "slurm"], ["launch", "tpu"]],
    ids=lambda argv: " ".join(argv))
def test_each_command_help_names_its_flags_with_an_example(argv):
    r = probe(*argv, "--help")
    assert r["rc"] == 0, r["stderr"]
    text = r["stdout"]
    assert "example" in text, text
    assert f"codemix {argv[0]} " in text.split("example", 1)[1], text  # the example is a command line
    assert "--" in text.split("example", 1)[0]  # flags are listed above it


def test_log_level_debug_keeps_library_start_up_logs():
    code = ("import os, sys; from codemix.main import main, _QuietTensorFlowImport\n"
            "try: main(sys.argv[1:])\nexcept SystemExit: pass\n"
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), any(isinstance(f, _QuietTensorFlowImport) "
            "for f in sys.meta_path))")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def state(*argv):
        out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env,
                             timeout=60, check=True).stdout
        return out.splitlines()[-1]

    assert state("--help") == "2 True"
    assert state("--log_level", "debug", "--help") == "0 False"
    assert state("--log_level=DEBUG", "--help") == "0 False"


@pytest.mark.slow
def test_tensorflow_start_up_lines_are_filtered_and_other_stderr_kept():
    code = ("import os, sys; from codemix.main import quiet_libraries\n"
            "quiet_libraries(debug=False)\n"
            "import tensorflow as tf\n"
            "tf.config.set_visible_devices([], 'GPU'); tf.constant([1.0]) * 2\n"
            "os.write(2, b'kept line\\n'); print('done', flush=True)")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert proc.stderr == "kept line\n"
