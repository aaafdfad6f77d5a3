"""The evaluation suite: benchmarks as SeqIO tasks, packed log-likelihood
scoring, KV-cache generation, sandboxed code execution, results with
bootstrap intervals. Entry points: `codemix eval` (cli.py), `EvalHook`
(hook.py), `Evaluator` (runner.py), `register_benchmark` (tasks.py)."""
