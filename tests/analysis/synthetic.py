"""Hand-made experiment directories with known numbers (no training).

`write_synthetic`: five variants, final-stage primary scores (copa and
arc_easy are "reasoning", triviaqa is "knowledge"):

  text_only    two seeds:  seed 0: copa .50 arc .60 trivia .20
                           seed 1: copa .50 arc .60 trivia .30
  code_p0      copa .50 arc .60 trivia .25      (= text_only's means)
  code_p50     copa .55 arc .66 trivia .25      (reasoning +10%)
  code_p100    copa .40 arc .48 trivia .20      (reasoning -20%, knowledge -20%)
  cooled       init (copa .40 arc .40) -> cooldown (copa .60 arc .60), no knowledge

Every benchmark has N_EXAMPLES examples in eval.json's "per_example": a
score p is the first round(p * N) examples of a fixed order answered
correctly, so a better run answers a superset of a worse one's questions.
Per example, prob_correct = 0.3 + 0.4 * acc and bpb = 2 - acc. Every
record also carries a non-primary acc_norm of 0.99, which must never enter
a score. Held-out: families text and code_web, N_DOCS documents each,
doc_bpb = 1 + 0.1 * (doc index % 5) + the run's HELDOUT_SHIFT.

`write_study`: the study's variant names (codemix/experiments/matrix.py)
with per-example values drawn at random around a common truth, and planted
effects (see its docstring).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BENCH = {"copa": "reasoning", "arc_easy": "reasoning", "triviaqa": "knowledge"}
PRIMARY = {"copa": "acc", "arc_easy": "acc", "triviaqa": "exact_match"}
N_EXAMPLES = 100
N_DOCS = 20

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
HELDOUT_SHIFT = {"init-code_p50-1K": -0.2, "init-code_p100-1K": 0.3}


def _mean_ci(values: np.ndarray) -> list[float]:
    m = float(values.mean())
    return [m - 0.1, m + 0.1]


def records_from(run: str, per_example: dict[str, dict[str, list]], bench: dict[str, str],
                 primary: dict[str, str], extra_acc_norm: bool = False) -> list[dict]:
    """eval.json records (benchmark means and category means of primary metrics)."""
    recs, cats = [], {}
    for b, values in per_example.items():
        for metric, vals in values.items():
            if metric == "ids":
                continue
            v = np.asarray(vals, dtype=np.float64)
            recs.append({"run": run, "step": 4, "benchmark": b, "category": bench[b], "metric": metric,
                         "value": float(v.mean()), "n": int(v.size), "ci": _mean_ci(v),
                         "primary": metric == primary[b]})
            if metric == primary[b]:
                cats.setdefault(bench[b], []).append(float(v.mean()))
        if extra_acc_norm:
            recs.append({"run": run, "step": 4, "benchmark": b, "category": bench[b], "metric": "acc_norm",
                         "value": 0.99, "n": 10, "ci": [0.9, 1.0], "primary": False})
    for c, vs in cats.items():
        m = sum(vs) / len(vs)
        recs.append({"run": run, "step": 4, "benchmark": f"category:{c}", "category": c, "metric": "mean",
                     "value": m, "n": len(vs), "ci": [m - 0.05, m + 0.05], "primary": False})
    return recs


def write_run(root: Path, name: str, variants: list[str], stage: str, parent: str | None, seed: int,
              per_example: dict | None, heldout: dict | None, bench: dict, primary: dict,
              experiment: str, extra_acc_norm: bool = False, sources=("text", "code_web")) -> None:
    """One finished run: lineage, run_info, config, metrics, eval.json, heldout/step_4.json."""
    d = root / "runs" / name
    d.mkdir(parents=True)
    (d / "lineage.json").write_text(json.dumps({
        "experiment": experiment, "run": name, "variants": variants, "stage": stage, "mixture": "m",
        "token_budget": 1024.0, "steps": 4, "tokens_per_step": 256, "parent": parent,
        "status": "finished", "final_step": 4, "tokens_seen": 1024.0, "eval": "eval.json"}))
    shares = [0.75, 0.25][:len(sources)]
    (d / "run_info.json").write_text(json.dumps({
        "train_steps": 4, "sources": list(sources), "requested_shares": shares}))
    (d / "operative_config.gin").write_text(
        "# Parameters for train:\n"
        "# ==============================================================================\n"
        f"train.seed = {seed}\ntrain.log_every = 1\n"
        "Experiment.bindings = \\\n    ['LR = 3e-3',\n     'WARMUP_STEPS = 1']\n")
    with open(d / "metrics.jsonl", "w") as f:
        for step in range(1, 5):
            rec = {"step": step, "tokens": 256.0 * step, "loss": 5.0 - step / 10}
            for s, share in zip(sources, shares):
                rec[f"loss/{s}"] = 5.0 + (0.1 if s == "text" else -0.1) - step / 10
                rec[f"tokens/{s}"] = 256.0 * share * step
            if heldout:
                rec.update({f"val/{fam}/bpb": float(np.mean(v)) for fam, v in heldout.items()})
            f.write(json.dumps(rec) + "\n")
    doc = {"schema_version": 1, "created": "now", "meta": {},
           "records": records_from(name, per_example or {}, bench, primary, extra_acc_norm)}
    if per_example is not None:
        doc["per_example"] = per_example
    (d / "eval.json").write_text(json.dumps(doc))
    if heldout:
        (d / "heldout").mkdir()
        fams = {fam: {"loss": float(np.mean(v)) * 0.7, "bpb": float(np.mean(v)), "tokens": 100 * len(v),
                      "bytes": 400 * len(v), "ids": [f"{fam}-{i}" for i in range(len(v))],
                      "doc_bpb": [float(x) for x in v]} for fam, v in heldout.items()}
        (d / "heldout" / "step_4.json").write_text(json.dumps({"step": 4, "families": fams}))


def _synthetic_examples(scores: dict[str, float]) -> dict[str, dict[str, list]]:
    out = {}
    for b, p in scores.items():
        k = round(p * N_EXAMPLES)
        acc = np.array([1.0] * k + [0.0] * (N_EXAMPLES - k))
        ids = [f"{b}-{i}" for i in range(N_EXAMPLES)]
        values = {"ids": ids, PRIMARY[b]: acc.tolist(), "bpb": (2.0 - acc).tolist()}
        if PRIMARY[b] == "acc":
            values["prob_correct"] = (0.3 + 0.4 * acc).tolist()
        out[b] = values
    return out


def write_synthetic(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    plan = []
    base_doc = 1.0 + 0.1 * (np.arange(N_DOCS) % 5)
    for name, (variants, stage, parent, seed, scores) in RUNS.items():
        plan.append({"run": name, "parent": parent, "stage": stage, "mixture": "m", "tokens": 1024.0,
                     "steps": 4, "flops": 1.0, "variants": variants})
        shift = HELDOUT_SHIFT.get(name, 0.0)
        write_run(root, name, variants, stage, parent, seed, _synthetic_examples(scores),
                  {"text": base_doc + shift, "code_web": base_doc + 2 * shift}, BENCH, PRIMARY,
                  "synthetic", extra_acc_norm=True)
    (root / "plan.json").write_text(json.dumps(plan))
    return root


# -- the study's matrix with planted effects --------------------------------
STUDY_BENCH = {"copa": "reasoning", "arc_easy": "reasoning", "piqa": "reasoning",
               "triviaqa": "knowledge", "humaneval": "code"}
STUDY_PRIMARY = {"copa": "acc", "arc_easy": "acc", "piqa": "acc", "triviaqa": "exact_match",
                 "humaneval": "pass@1"}
STUDY_FAMILIES = ("text", "code_web")
# variant: its stages' run-name stems (init first); later variants reuse earlier runs.
STUDY_CHAINS = {
    "text_only": ("init-text_only",),
    "balanced_only": ("init-balanced",),
    "balanced_text": ("init-balanced_half", "continue-text"),
    "code_text": ("init-code_only", "continue-text"),
    "balanced_text+cooldown_code": ("init-balanced_half", "continue-text", "cooldown-code"),
    **{f"code_p{p}": (f"init-code_p{p}",) for p in (0, 25, 50, 75, 90, 100)},
    "quality_web": ("init-quality_web",),
    "quality_synthetic": ("init-quality_synthetic",),
}


def write_study(root: Path, effects: dict[str, dict[str, float]] | None = None, seeds: int = 2,
                n_examples: int = 300, n_docs: int = 200, rng_seed: int = 0,
                variants: tuple[str, ...] | None = None, per_example: bool = True,
                seed_sd: float = 0.002) -> Path:
    """An experiment with the study's variant names and known truth.

    Every run answers the same examples; the true per-example values are
    shared by all variants (prob_correct ~ Beta(4, 6), gold bpb ~ Gamma
    around 1). A run adds a seed shift (sd `seed_sd`) and per-example noise
    (sd 0.05) and draws 0/1 answers from its prob_correct. The default seed
    shift is small next to the example noise: with 2 seeds the bootstrap
    cannot estimate a dominant seed variance (codemix/analysis/stats.py,
    "Few seeds"), and these fixtures test the verdicts, not that limit. `effects` plants
    improvements on a variant's final-stage runs: {variant: {"reasoning":
    0.3}} makes its prob_correct 30% higher; "knowledge"/"code" make its gold
    bpb 30% lower; "heldout:<family>" lowers that family's document bpb.
    Without effects every variant is identical in distribution to the
    baseline (the pure-noise case).
    """
    effects = effects or {}
    rng = np.random.default_rng(rng_seed)
    truth = {}
    for b, cat in STUDY_BENCH.items():
        truth[b] = {"prob": rng.beta(4, 6, n_examples), "bpb": rng.gamma(20, 0.05, n_examples)}
    doc_truth = {f: rng.gamma(20, 0.05, n_docs) for f in STUDY_FAMILIES}
    variants = tuple(variants or STUDY_CHAINS)
    runs: dict[str, dict] = {}  # run -> {"variants", "stage", "parent", "seed", "effect"}
    for v in variants:
        stems = STUDY_CHAINS[v]
        for s in range(seeds):
            parent = None
            for depth in range(len(stems)):
                name = "__".join(stems[:depth + 1]) + (f"__seed{s}" if s else "")
                r = runs.setdefault(name, {"variants": [], "stage": stems[depth].split("-")[0],
                                           "parent": parent, "seed": s, "effect": {}})
                r["variants"].append(v)
                if depth == len(stems) - 1:
                    r["effect"] = effects.get(v, {})
                parent = name
    root.mkdir(parents=True, exist_ok=True)
    plan = []
    for name, r in runs.items():
        plan.append({"run": name, "parent": r["parent"], "stage": r["stage"], "mixture": "m",
                     "tokens": 1024.0, "steps": 4, "flops": 1.0, "variants": r["variants"]})
        e = r["effect"]
        shift = rng.normal(0, seed_sd)
        pe = {}
        for b, cat in STUDY_BENCH.items():
            t = truth[b]
            gain = e.get(cat, 0.0)
            prob = np.clip(t["prob"] * (1 + (gain if cat == "reasoning" else 0.0)) + shift
                           + rng.normal(0, 0.05, n_examples), 0.001, 0.999)
            bpb = t["bpb"] * (1 - (gain if cat != "reasoning" else 0.0)) * (1 - shift) \
                + rng.normal(0, 0.05, n_examples)
            correct = (rng.random(n_examples) < prob).astype(float)
            values = {"ids": [f"{b}-{i}" for i in range(n_examples)], STUDY_PRIMARY[b]: correct.tolist(),
                      "bpb": bpb.tolist()}
            if cat == "reasoning":
                values["prob_correct"] = prob.tolist()
            pe[b] = values
        held = {f: doc_truth[f] * (1 - e.get(f"heldout:{f}", 0.0)) * (1 - shift) + rng.normal(0, 0.05, n_docs)
                for f in STUDY_FAMILIES}
        if per_example:
            write_run(root, name, r["variants"], r["stage"], r["parent"], r["seed"], pe, held,
                      STUDY_BENCH, STUDY_PRIMARY, "study")
        else:
            write_run(root, name, r["variants"], r["stage"], r["parent"], r["seed"], pe, None,
                      STUDY_BENCH, STUDY_PRIMARY, "study")
            doc = json.loads((root / "runs" / name / "eval.json").read_text())
            doc.pop("per_example")
            (root / "runs" / name / "eval.json").write_text(json.dumps(doc))
    (root / "plan.json").write_text(json.dumps(plan))
    return root
