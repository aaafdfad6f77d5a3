"""Generative quality: pairwise LLM-as-a-judge win rates of a candidate against a baseline.

  pairwise.py      both models answer the prompts, the judge compares each pair in both
                   orders, reconciliation and bootstrap win rates (`judge_runs`)
  client.py        the judge behind an OpenAI-compatible endpoint: verdicts, retries, cache
  prompts.py       the prompts: MT-Bench first turns by default, or a user JSONL file
  local_server.py  llama-cpp-python's server with SmolLM2-135M-Instruct, for demos and tests

The command is `codemix judge` (codemix/commands/judge.py).
"""
