"""Build the small evaluated experiment that the analysis tests read.

The runner trains every run of tests/analysis/micro_eval.gin with its own
evaluation switched off; every run is then scored here with the real
evaluator (copa and arc_easy, 4 examples each, with their per-example values),
so the fixture does not depend on how the runner wires evaluation. The vocabulary is the run's mixture's
(named in its lineage).
"""
from __future__ import annotations

import json
from pathlib import Path

MICRO_EVAL = "tests/analysis/micro_eval.gin"
BENCHMARKS = ("copa", "arc_easy")
LIMIT = 4


def evaluate_missing(root: Path) -> None:
    from unittest import mock

    import gin
    from codemix.data import pipeline
    from codemix.eval import loading, vocabulary
    from codemix.eval.runner import EvalSettings, Evaluator, write_results

    for run in sorted((root / "runs").iterdir()):
        if (run / "eval.json").exists():
            continue
        mixture = json.loads((run / "lineage.json").read_text())["mixture"]
        with mock.patch.object(vocabulary, "eval_vocabulary", lambda m=mixture: pipeline.data_vocabulary(m)):
            cfg, params, vocab, info = loading.load_model_for_eval(str(run))
        gin.clear_config()
        settings = EvalSettings(bootstrap_resamples=200, row_len=256)
        out = Evaluator(cfg, params, vocab, settings).run_full(
            list(BENCHMARKS), LIMIT, run_name=info.run, step=info.step)
        # per-example values too, as the experiment runner writes them: the report's intervals need them
        write_results(str(run / "eval.json"), out.records, {"limit": LIMIT, "seconds": out.seconds},
                      out.per_example)
        lineage = json.loads((run / "lineage.json").read_text())
        lineage["eval"] = "eval.json"
        (run / "lineage.json").write_text(json.dumps(lineage, indent=2))


def make_experiment(root: Path) -> Path:
    from codemix.experiments import runner

    runner.run_experiment(MICRO_EVAL, str(root), progress=False,
                          gin_params=["Experiment.eval_benchmarks = ''"])
    evaluate_missing(root)
    return root


if __name__ == "__main__":
    import sys

    make_experiment(Path(sys.argv[1]))
