"""A hand-made experiment directory with known numbers (no training).

Variants and their final-stage scores (primary metrics; copa and arc_easy are
"reasoning", triviaqa is "knowledge"):

  text_only    two seeds:  seed 0: copa .50 arc .60 trivia .20
                           seed 1: copa .50 arc .60 trivia .30
  code_p0      copa .50 arc .60 trivia .25      (= text_only's means)
  code_p50     copa .55 arc .66 trivia .25      (reasoning +10%)
  code_p100    copa .40 arc .48 trivia .20      (reasoning -20%, knowledge -20%)
  cooled       init (copa .40 arc .40) -> cooldown (copa .60 arc .60), no knowledge

Every record also carries a non-primary acc_norm of 0.99, which must never
enter a score.
"""
from __future__ import annotations

import json
from pathlib import Path

BENCH = {"copa": "reasoning", "arc_easy": "reasoning", "triviaqa": "knowledge"}
PRIMARY = {"copa": "acc", "arc_easy": "acc", "triviaqa": "exact_match"}

RUNS = {
    # run: (variants, stage, parent, seed, scores)
    "init-text_only-1K": (["text_only"], "init", None, 0, {"copa": .5, "arc_easy": .6, "triviaqa": .2}),
    "init-text_only-1K-seed1": (["text_only"], "init", None, 1, {"copa": .5, "arc_easy": .6, "triviaqa": .3}),
    "init-code_p0-1K": (["code_p0"], "init", None, 0, {"copa": .5, "arc_easy": .6, "triviaqa": .25}),
    "init-code_p50-1K": (["code_p50"], "init", None, 0, {"copa": .55, "arc_easy": .66, "triviaqa": .25}),
    "init-code_p100-1K": (["code_p100"], "init", None, 0, {"copa": .4, "arc_easy": .48, "triviaqa": .2}),
    "init-balanced-1K": (["cooled"], "init", None, 0, {"copa": .4, "arc_easy": .4}),
    "init-balanced-1K__cooldown-cool-1K": (["cooled"], "cooldown", "init-balanced-1K", 0,
                                           {"copa": .6, "arc_easy": .6}),
}


def _records(run: str, scores: dict[str, float]) -> list[dict]:
    recs = []
    for b, v in scores.items():
        recs.append({"run": run, "step": 4, "benchmark": b, "category": BENCH[b], "metric": PRIMARY[b],
                     "value": v, "n": 10, "ci": [v - 0.1, v + 0.1]})
        recs.append({"run": run, "step": 4, "benchmark": b, "category": BENCH[b], "metric": "acc_norm",
                     "value": 0.99, "n": 10, "ci": [0.9, 1.0]})
    cats: dict[str, list[float]] = {}
    for b, v in scores.items():
        cats.setdefault(BENCH[b], []).append(v)
    for c, vs in cats.items():
        m = sum(vs) / len(vs)
        recs.append({"run": run, "step": 4, "benchmark": f"category:{c}", "category": c, "metric": "mean",
                     "value": m, "n": len(vs), "ci": [m - 0.05, m + 0.05]})
    return recs


def write_synthetic(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    plan = []
    for name, (variants, stage, parent, seed, scores) in RUNS.items():
        plan.append({"run": name, "parent": parent, "stage": stage, "mixture": "m", "tokens": 1024.0,
                     "steps": 4, "flops": 1.0, "variants": variants})
        d = root / "runs" / name
        d.mkdir(parents=True)
        (d / "lineage.json").write_text(json.dumps({
            "experiment": "synthetic", "run": name, "variants": variants, "stage": stage, "mixture": "m",
            "token_budget": 1024.0, "steps": 4, "tokens_per_step": 256, "parent": parent,
            "status": "finished", "final_step": 4, "tokens_seen": 1024.0, "eval": "eval.json"}))
        (d / "run_info.json").write_text(json.dumps({
            "train_steps": 4, "sources": ["text", "code_web"], "requested_shares": [0.75, 0.25]}))
        (d / "operative_config.gin").write_text(
            "# Parameters for train:\n"
            "# ==============================================================================\n"
            f"train.seed = {seed}\ntrain.log_every = 1\n"
            "Experiment.bindings = \\\n    ['LR = 3e-3',\n     'WARMUP_STEPS = 1']\n")
        with open(d / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps({"step": step, "tokens": 256.0 * step, "loss": 5.0 - step / 10,
                                    "loss/text": 5.1 - step / 10, "loss/code_web": 4.9 - step / 10,
                                    "tokens/text": 200.0 * step, "tokens/code_web": 56.0 * step}) + "\n" for step in range(1, 5))
        (d / "eval.json").write_text(json.dumps({"schema_version": 1, "created": "now", "meta": {},
                                                 "records": _records(name, scores)}))
    (root / "plan.json").write_text(json.dumps(plan))
    return root
