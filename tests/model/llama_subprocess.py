"""llama.cpp, run in a child process for the tests that compare against it.

A crash inside llama.cpp (a native library: a segfault kills the whole
interpreter, as its AMX path did on Intel Xeons, issue 31) then fails the one
test that asked, with the signal and the child's last output, and the rest of
the suite runs on. The child is `python -m tests.model.llama_subprocess`: it
reads a JSON request on stdin and writes an .npz of results.

    ids    = tokenize(model_path, strings)          -> list of token-id lists
    logits = llama_logits(model_path, rows, **kw)   -> list of (len(row), vocab) arrays
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def require_llama_cpp() -> None:
    """Skip (outside CI) when llama-cpp-python is not installed; CI installs it."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        if os.environ.get("CI"):
            raise AssertionError("CI installs llama-cpp-python ('.[test]'), yet it is missing")
        pytest.skip("llama-cpp-python is not installed (pip install -e '.[test]'); CI runs these tests")


def _run(request: dict, timeout_s: float = 600) -> np.lib.npyio.NpzFile:
    require_llama_cpp()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npz")
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        p = subprocess.run([sys.executable, "-m", "tests.model.llama_subprocess", out], check=False,
                           input=json.dumps(request), text=True, capture_output=True, cwd=REPO, env=env, timeout=timeout_s)
        if p.returncode != 0:
            status = str(p.returncode)
            if p.returncode < 0:
                status += f" ({signal.Signals(-p.returncode).name})"
            tail = (p.stdout + p.stderr).strip()[-2000:]
            pytest.fail(f"llama.cpp's child process died with exit status {status} "
                        f"({request['op']} on {os.path.basename(request['model_path'])}); its last output:\n{tail}\n"
                        f"A negative status is a signal: a crash in the llama.cpp library "
                        f"(see codemix.eval.judge.local_server.LLAMA_CPP_REBUILD)", pytrace=False)
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


def tokenize(model_path: str, strings: list[str]) -> list[list[int]]:
    z = _run({"op": "tokenize", "model_path": model_path, "strings": strings})
    return [z[f"ids_{i}"].tolist() for i in range(len(strings))]


def llama_logits(model_path: str, rows: list[list[int]], f32_cache: bool = False) -> list[np.ndarray]:
    """Logits at every position of each row (a fresh context per row), on one thread.

    One thread: llama.cpp's workers spin at barriers, which is slow on a busy
    2-core machine, and one is enough for a 135M model."""
    z = _run({"op": "logits", "model_path": model_path, "rows": [list(map(int, r)) for r in rows],
              "f32_cache": f32_cache})
    return [z[f"logits_{i}"] for i in range(len(rows))]


def _child(out: str) -> None:
    import llama_cpp

    req = json.load(sys.stdin)
    results = {}
    if req["op"] == "tokenize":
        llm = llama_cpp.Llama(model_path=req["model_path"], vocab_only=True, verbose=False)
        for i, s in enumerate(req["strings"]):
            results[f"ids_{i}"] = np.asarray(llm.tokenize(s.encode("utf-8"), add_bos=False, special=True), np.int64)
    elif req["op"] == "logits":
        kw = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if req["f32_cache"] else {}
        llm = llama_cpp.Llama(model_path=req["model_path"], n_ctx=256, n_batch=256, logits_all=True, n_threads=1,
                              verbose=False, **kw)
        for i, ids in enumerate(req["rows"]):
            llm.reset()
            llm.eval(ids)
            results[f"logits_{i}"] = np.array(llm.scores[: len(ids)], dtype=np.float32)
    elif req["op"] == "crash":  # the helper's own test: a native crash, as SIGSEGV
        os.kill(os.getpid(), signal.SIGSEGV)
    else:
        raise SystemExit(f"unknown op {req['op']!r}")
    np.savez(out, **results)


if __name__ == "__main__":
    _child(sys.argv[1])
