"""A trainer hook that runs a quick benchmark subset every N steps.

In a gin file:

    train.hooks = [@EvalHook()]
    EvalHook.benchmarks = ["hellaswag", "arc_easy", "copa"]
    EvalHook.limit = 200
    EvalHook.every = 1000

Each call evaluates the live params (no checkpoint round trip), writes the
records and per-example values to `<workdir>/eval/step_<step>.json`
(results.json schema) and returns
`{"eval/<benchmark>/<metric>": value, "eval/category:<c>/mean": ...}`, which
the trainer merges into the next metrics.jsonl line. The vocabulary is that
of the run's data (`make_train_iterator.mixture`), or `eval_vocabulary` if
bound. Code benchmarks in the hook need bubblewrap like everywhere else.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import gin
import jax

from codemix.eval import tasks, vocabulary
from codemix.eval.runner import EvalSettings, Evaluator, write_results

log = logging.getLogger(__name__)


@gin.configurable
class EvalHook:
    """Evaluate `benchmarks` on the first `limit` examples every `every` steps.

    Args:
      benchmarks: benchmark names (default: three fast reasoning ones).
      limit: examples per benchmark (a quick subset; None = all).
      every: steps between evaluations.
      num_shots: in-context examples (0 = zero-shot).
    """

    def __init__(self, benchmarks: Sequence[str] = ("hellaswag", "arc_easy", "copa"),
                 limit: int | None = 100, every: int = 1000, num_shots: int = 0):
        self.names = tasks.resolve_names(benchmarks)
        self.limit = limit
        self.every = every
        self.settings = EvalSettings(num_shots=num_shots)
        self._vocab = None

    def _vocabulary(self):
        if self._vocab is None:
            self._vocab = vocabulary.run_vocabulary("the run's gin config (EvalHook)")
        return self._vocab

    def __call__(self, step: int, state: dict, cfg, workdir: str) -> dict:
        evaluator = Evaluator(cfg, state["params"], self._vocabulary(), self.settings)
        from codemix import storage

        run = storage.path(workdir).name
        out = evaluator.run_full(self.names, self.limit, run_name=run, step=int(step))
        if jax.process_index() == 0:
            write_results(str(storage.path(workdir, "eval", f"step_{int(step)}.json")), out.records,
                          {"source": "EvalHook", "limit": self.limit, "seconds": out.seconds},
                          out.per_example)
        log.info("eval hook at step %d took %.1fs", step, sum(out.seconds.values()))
        return {f"eval/{r['benchmark']}/{r['metric']}": r["value"] for r in out.records}
