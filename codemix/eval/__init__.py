"""The evaluation suite: benchmarks as SeqIO tasks, packed log-likelihood
scoring, KV-cache generation, sandboxed code execution, results with
bootstrap intervals; the LLM judge is the judge/ subpackage. Entry points:
`codemix eval` (codemix/commands/eval.py), `EvalHook` (hook.py), `Evaluator`
(runner.py), `register_benchmark` (tasks.py)."""
