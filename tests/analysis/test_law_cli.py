"""`codemix law fit/propose` on an experiment directory, and the closed loop on a micro experiment."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from codemix.analysis import law_experiment as le
from codemix.analysis.load import load_experiment
from codemix.main import main

CODE = (0.0, 0.25, 0.5, 0.75, 1.0)
# Known laws over the code share r (text share 1 - r): held-out text bpb rises with code,
# code bpb falls, prob_correct rises.
TEXT_BPB = lambda r: 1.2 + 0.3 * math.exp(2.0 * r)
CODE_BPB = lambda r: 1.0 + 1.5 * math.exp(-3.0 * r)
PROB = lambda r: 0.6 - 0.2 * math.exp(-2.0 * r)


def write_sweep(root: Path, code=CODE, seeds=2, noise=0.0, extra_budget=True) -> Path:
    """Experiment dir with code_p<N> init runs (text/code_web) whose metrics follow the laws above."""
    rng = np.random.default_rng(0)
    plan = []
    runs = [(f"code_p{round(100 * r)}", r, s, 1024.0) for r in code for s in range(seeds)]
    if extra_budget:  # a half-budget run that must not enter the law
        runs.append(("half", 0.5, 0, 512.0))
    for variant, r, seed, budget in runs:
        name = f"init-{variant}-{budget:g}" + (f"__seed{seed}" if seed else "")
        d = root / "runs" / name
        d.mkdir(parents=True)
        plan.append({"run": name, "parent": None, "stage": "init", "mixture": variant, "tokens": budget,
                     "steps": 4, "variants": [variant]})
        (d / "lineage.json").write_text(json.dumps({
            "experiment": "sweep", "run": name, "variants": [variant], "stage": "init", "mixture": variant,
            "token_budget": budget, "steps": 4, "parent": None, "status": "finished"}))
        sources = [s for s, x in (("text", 1 - r), ("code_web", r)) if x > 0]
        shares = [x for x in (1 - r, r) if x > 0]
        (d / "run_info.json").write_text(json.dumps({"sources": sources, "requested_shares": shares}))
        (d / "operative_config.gin").write_text(f"train.seed = {seed}\n")
        rec = {"step": 4, "tokens": budget, "loss": 3.0, **{f"tokens/{s}": budget * x for s, x in zip(sources, shares)}}
        (d / "metrics.jsonl").write_text(json.dumps(rec) + "\n")
        bump = rng.normal(0, noise, 3) if noise else np.zeros(3)
        (d / "heldout").mkdir()
        (d / "heldout" / "step_4.json").write_text(json.dumps({"step": 4, "families": {
            "text": {"loss": 1.0, "bpb": TEXT_BPB(r) + bump[0]}, "code_web": {"loss": 1.0, "bpb": CODE_BPB(r) + bump[1]}}}))
        recs = [{"run": name, "step": 4, "benchmark": b, "category": "reasoning", "metric": m, "value": v, "n": 10,
                 "ci": [v - .1, v + .1], "primary": m == "acc"}
                for b, off in (("arc_easy", 0.0), ("copa", 0.1))
                for m, v in (("prob_correct", PROB(r) + off + bump[2]), ("acc", 0.5))]
        (d / "eval.json").write_text(json.dumps({"records": recs}))
    (root / "plan.json").write_text(json.dumps(plan))
    return root


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["--log_level", "WARNING", "law", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_fit_json_recovers_the_law_of_the_runs(tmp_path, capsys):
    root = write_sweep(tmp_path / "exp")
    rc, out, _ = _cli(capsys, "fit", root, "--target", "val/text/bpb", "--target", "reasoning/prob_correct",
                      "--objective", "min val/text/bpb + val/code_web/bpb", "--resamples", "50", "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["families"] == ["code_web", "text"] and len(res["runs"]) == 10  # the half-budget run left out
    t = res["targets"]["val/text/bpb"]
    assert t["reference"] == "text" and t["bootstrap"] == "seeds"
    # Reference text: L = 1.2 + 0.3 e^{2 r_code}: c = 1.2, k = 0.3, t_code_web = 2.
    np.testing.assert_allclose([t["params"][n][0] for n in ("c", "k", "t_code_web")], [1.2, 0.3, 2.0], rtol=1e-3)
    assert t["loo"]["exp"] < 1e-6 < t["loo"]["linear"]
    assert t["optimum"]["shares"]["code_web"] == pytest.approx(0.0)  # min text bpb: no code
    # reasoning/prob_correct = mean of arc_easy and copa = 0.65 - 0.2 e^{-2r}, max at r = 1.
    r = res["targets"]["reasoning/prob_correct"]
    np.testing.assert_allclose([r["params"][n][0] for n in ("c", "k", "t_code_web")], [0.65, -0.2, -2.0], rtol=1e-3)
    assert r["optimum"]["sense"] == "max" and r["optimum"]["shares"]["code_web"] == pytest.approx(1.0)
    # Sum of both bpb laws: d/dr = 0.6 e^{2r} - 4.5 e^{-3r} = 0 at r = ln(7.5) / 5 = 0.403 (grid step 1/400).
    assert res["objective"]["shares"]["code_web"] == pytest.approx(math.log(7.5) / 5, abs=1.5e-3)


def test_fit_text_prints_parameters_loo_and_optimum(tmp_path, capsys):
    root = write_sweep(tmp_path / "exp", noise=0.01)
    rc, out, _ = _cli(capsys, "fit", root, "--target", "val/code_web/bpb", "--resamples", "50",
                      "--objective", "min val/text/bpb + val/code_web/bpb; val/code_web/bpb <= 1.5")
    assert rc == 0, out
    assert "t_code_web" in out and "leave-one-out RMSE over interior mixtures: exp" in out and "(best)" in out
    assert "at the sweep's ends (extrapolated)" in out and "fit: consistent with the seeds' noise" in out
    assert "optimum of 'min val/text/bpb + val/code_web/bpb; val/code_web/bpb <= 1.5'" in out


def test_propose_refuses_a_law_that_misfits_unless_forced(tmp_path, capsys, monkeypatch):
    """Held-out text bpb that is a parabola in the code share (worst at 50%), seeds 0.002 apart:
    no exp law follows it, the lack-of-fit test says so, and propose refuses it."""
    import sys

    monkeypatch.setattr(sys.modules[__name__], "TEXT_BPB", lambda r: 1.5 + 1.2 * r * (1 - r))
    root = write_sweep(tmp_path / "exp", code=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0), noise=0.002)
    rc, out, _ = _cli(capsys, "fit", root, "--target", "val/text/bpb", "--resamples", "50", "--json")
    t = json.loads(out)["targets"]["val/text/bpb"]
    assert rc == 0 and t["misfit"] and t["fit_p"] < 1e-6 and t["fit"].startswith("MISFIT")
    out_gin = tmp_path / "mix" / "p.gin"
    rc, text, _ = _cli(capsys, "propose", root, "--objective", "min val/text/bpb", "--output", out_gin,
                       "--resamples", "50")
    assert rc == 1 and "refused: the exp law does not fit val/text/bpb (MISFIT" in text and "--force" in text
    assert not out_gin.parent.exists()
    rc, text, _ = _cli(capsys, "propose", root, "--objective", "min val/text/bpb", "--output", out_gin,
                       "--resamples", "50", "--force")
    assert rc == 0 and "warning: proposing from a law that does not fit" in text and out_gin.exists()


def test_propose_writes_a_mixture_gin_that_parses_and_sums_to_one(tmp_path, capsys):
    import gin
    from codemix.data import mixtures

    assert le.MIXTURE_DIR == mixtures.MIXTURE_DIR  # where `experiment run` finds a mixture by name
    root = write_sweep(tmp_path / "exp", noise=0.01)
    out = tmp_path / "mix" / "law_probe.gin"
    rc, text, _ = _cli(capsys, "propose", root, "--objective", "max reasoning/prob_correct", "--output", out,
                       "--explore", "2", "--resamples", "50")
    assert rc == 0, text
    files = sorted(p.name for p in out.parent.iterdir())
    assert files == ["law_probe.gin", "law_probe.law.json", "law_probe_explore1.gin", "law_probe_explore1.law.json",
                     "law_probe_explore2.gin", "law_probe_explore2.law.json"]
    gin.clear_config()
    try:
        for name in ("law_probe", "law_probe_explore1", "law_probe_explore2"):
            with gin.unlock_config():
                gin.parse_config_file(str(out.parent / f"{name}.gin"))
            spec = mixtures.get_spec(name)
            assert sum(spec.shares.values()) == pytest.approx(1.0, abs=1e-9)
            assert set(spec.shares) <= {"text", "code_web"}
    finally:
        gin.clear_config()
    side = json.loads(out.with_name("law_probe.law.json").read_text())
    assert side["kind"] == "optimum" and side["shares"] == {"code_web": 1.0}
    pred = side["predicted"]["reasoning/prob_correct"]
    assert pred["low"] <= pred["predicted"] <= pred["high"]


def test_too_few_runs_is_one_clear_cli_error(tmp_path, capsys):
    root = write_sweep(tmp_path / "exp", code=(0.0, 0.5, 1.0), extra_budget=False)
    rc, out, err = _cli(capsys, "fit", root, "--target", "val/text/bpb")
    assert rc == 2 and not out
    assert err.strip().count("\n") == 0 and "too few runs for the exp law: 3 distinct mixture point(s)" in err


def test_unknown_target_lists_the_available_ones(tmp_path, capsys):
    root = write_sweep(tmp_path / "exp")
    rc, _, err = _cli(capsys, "fit", root, "--target", "val/markup/bpb", "--form", "linear")
    assert rc == 2 and "val/markup/bpb" in err and "val/text/bpb" in err


def test_report_shows_the_law_and_predicted_vs_measured(tmp_path):
    from codemix.analysis.report import write_report
    from tests.analysis.markdown import unpadded

    root = write_sweep(tmp_path / "exp", noise=0.01)
    # code_p50 stands in for a trained proposal: its prediction sidecar lies in the experiment dir.
    (root / "code_p50.law.json").write_text(json.dumps({
        "mixture": "code_p50", "kind": "optimum", "shares": {"code_web": 0.5, "text": 0.5},
        "predicted": {"val/text/bpb": {"predicted": 2.0, "low": 1.95, "high": 2.05}}}))
    text = unpadded(Path(write_report(str(root), resamples=200)).read_text())
    part = text[text.index("## Mixture law"):text.index("## Missing")]
    row = next(line for line in part.splitlines() if line.startswith("| val/text/bpb | 5 | 10 | c 1.2"))
    assert "min: code_web 0.00" in row
    assert "| val/text/bpb | code_p50 | 0.500 | 0.500 | 2 |" in part
    assert "| code_p50 | optimum | val/text/bpb | 2.0000 [1.9500, 2.0500] | 2.0" in part
    assert "![Mixture law: runs, fitted law and predicted optimum](report/mixture_law.png)" in text
    assert (root / "report" / "mixture_law.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_a_law_says_why(tmp_path):
    from codemix.analysis.report import write_report

    root = write_sweep(tmp_path / "exp", code=(0.0, 0.5, 1.0), extra_budget=False)
    text = Path(write_report(str(root), resamples=100)).read_text()
    part = text[text.index("## Mixture law"):text.index("## Missing")]
    assert "`val/text/bpb`: no law (too few runs for the exp law" in part
    assert "_Not drawn: no law fitted over exactly two varying families._" in text


MICRO_LOOP = """\
Experiment.name = "law_loop"
Experiment.model_gin = "gin/models/tiny.gin"
Experiment.runtime_gin = "gin/runtime/cpu.gin"
Experiment.batch_size = 4
Experiment.sequence_length = 64
Experiment.variants = [@p/chain()]
p/chain.name = "proposed"
p/chain.stages = [("init", "{name}", 512)]
Experiment.bindings = [
    "ModelConfig.d_model = 64", "ModelConfig.num_layers = 1", "ModelConfig.num_heads = 2",
    "ModelConfig.num_kv_heads = 2", "ModelConfig.head_dim = 32", "ModelConfig.d_ff = 128",
    "make_mesh.num_devices = 1", "LR = 3e-3", "WARMUP_STEPS = 1", "train.log_every = 1",
    "train.checkpoint_every = 100", "train.keep_checkpoints = 1", "train.progress = False",
    "HeldOutOptions.tokens_per_family = 512",
]
"""


@pytest.mark.slow
def test_proposed_mixture_trains_in_a_micro_experiment_and_is_checked(tmp_path, capsys):
    from codemix.experiments import runner

    sweep = write_sweep(tmp_path / "sweep", noise=0.01)
    name = f"law_test_{os.getpid()}"
    gin_path = le.MIXTURE_DIR / f"{name}.gin"
    try:
        rc, text, _ = _cli(capsys, "propose", sweep, "--objective", "min val/text/bpb + val/code_web/bpb",
                           "--output", gin_path, "--resamples", "50")
        assert rc == 0, text
        exp_gin = tmp_path / "loop.gin"
        exp_gin.write_text(MICRO_LOOP.format(name=name))
        work = tmp_path / "loop"
        runner.run_experiment(str(exp_gin), str(work), progress=False)
        data = load_experiment(work)
        run = data.runs.iloc[0]
        assert run["status"] == "finished" and run["mixture"] == name
        side = json.loads(gin_path.with_name(f"{name}.law.json").read_text())
        realized = data.shares.set_index("source")["realized"].to_dict()
        for fam, share in side["shares"].items():
            assert realized[fam] == pytest.approx(share, abs=0.15)  # 8 rows of 64 tokens per step
        pvm = le.predicted_vs_measured(data, dirs=[le.MIXTURE_DIR])
        assert set(pvm["target"]) == {"val/text/bpb", "val/code_web/bpb"}
        assert np.isfinite(pvm["measured"]).all() and (pvm["n_seeds"] == 1).all()
    finally:
        for p in (gin_path, gin_path.with_name(f"{name}.law.json")):
            p.unlink(missing_ok=True)
