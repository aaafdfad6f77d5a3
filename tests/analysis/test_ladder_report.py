"""A ladder experiment end to end: `law fit/propose --target_scale`, the report section on a synthetic ladder
whose metrics follow a known joint law, and a 2-size micro ladder that trains and renders its section."""
import json
from pathlib import Path

import numpy as np
import pytest

from codemix.analysis import ladder_analysis as la
from codemix.analysis import ladder_report as lr
from codemix.analysis.load import load_experiment
from codemix.main import main
from tests.analysis.test_scale_law import _law

SIZES = (20e6, 50e6, 120e6, 300e6)
CODE = (0.0, 0.25, 0.5, 0.75, 1.0)
DOCS = 12


def write_ladder(root: Path, sizes=SIZES, tpp=(10, 20), seeds=2, noise=0.005, fail=()) -> Path:
    """Experiment dir of init runs over sizes x budgets x code shares x seeds; val/text/bpb follows the joint
    law of test_scale_law, val/code_web/bpb the same law mirrored (code share <-> text share), plus noise.
    Per-document values: DOCS documents whose mean is the run's bpb. Runs named in `fail` are left failed."""
    rng = np.random.default_rng(0)
    plan = []
    for n in sizes:
        for t in tpp:
            for r in CODE:
                for s in range(seeds):
                    name = f"init-code_p{round(100 * r)}-{n * t:.4g}-w{int(n / 1e6)}" + (f"__seed{s}" if s else "")
                    mixture = f"code_p{round(100 * r)}"
                    d = root / "runs" / name
                    d.mkdir(parents=True)
                    plan.append({"run": name, "parent": None, "stage": "init", "mixture": mixture, "tokens": n * t,
                                 "steps": 4, "params": n, "variants": [f"{mixture}@{n:g}x{t}"]})
                    status = "failed" if name in fail else "finished"
                    (d / "lineage.json").write_text(json.dumps({
                        "experiment": "ladder", "run": name, "variants": [f"{mixture}@{n:g}x{t}"], "stage": "init",
                        "mixture": mixture, "token_budget": n * t, "steps": 4, "parent": None, "status": status}))
                    sources = [f for f, x in (("text", 1 - r), ("code_web", r)) if x > 0]
                    shares = [x for x in (1 - r, r) if x > 0]
                    (d / "run_info.json").write_text(json.dumps({"sources": sources, "requested_shares": shares,
                                                                 "params": n}))
                    (d / "operative_config.gin").write_text(f"train.seed = {s}\n")
                    (d / "metrics.jsonl").write_text(json.dumps({"step": 4, "tokens": n * t, "loss": 3.0}) + "\n")
                    text = _law(np.array([n]), np.array([n * t]), np.array([r]))[0] + rng.normal(0, noise)
                    code = _law(np.array([n]), np.array([n * t]), np.array([1 - r]))[0] + rng.normal(0, noise)
                    fams = {}
                    for fam, v in (("text", text), ("code_web", code)):
                        docs = v + rng.normal(0, 0.05, DOCS)
                        docs += v - docs.mean()
                        fams[fam] = {"loss": 1.0, "bpb": float(v), "ids": [f"d{i}" for i in range(DOCS)],
                                     "doc_bpb": docs.tolist()}
                    (d / "heldout").mkdir()
                    for step in range(1, 5):  # in-loop evaluations for the checkpoint noise
                        wobble = {f: {**x, "bpb": x["bpb"] + 0.002 * (step % 2)} for f, x in fams.items()}
                        (d / "heldout" / f"step_{step}.json").write_text(json.dumps(
                            {"step": step, "families": wobble if step < 4 else fams}))
    (root / "plan.json").write_text(json.dumps(plan))
    return root


def _cli(capsys, *argv):
    rc = main(["--log_level", "WARNING", "law", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def ladder_dir(tmp_path_factory):
    return write_ladder(tmp_path_factory.mktemp("ladder"))


def test_law_fit_with_target_scale_predicts_the_optimum_at_the_target(ladder_dir, capsys):
    rc, out, err = _cli(capsys, "fit", ladder_dir, "--target", "val/text/bpb", "--target", "val/code_web/bpb",
                        "--target_scale", "2.8e9,56e9", "--resamples", "40", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["form"] == "joint" and r["runs"] == 80 and len(r["sizes"]) == 4
    lo, hi = r["optimum"]["low"]["code_web"], r["optimum"]["high"]["code_web"]
    # The summed objective is symmetric in text and code (the code law mirrors the text law): optimum 1/2.
    assert lo <= 0.5 <= hi and abs(r["optimum"]["shares"]["code_web"] - 0.5) < 0.1
    alpha = r["targets"]["val/text/bpb"]["params"]["alpha_text"]
    assert alpha[1] <= 0.35 <= alpha[2]
    assert "additive" in r["targets"]["val/text/bpb"]["loo_other"]


def test_law_target_scale_refusals(ladder_dir, capsys, tmp_path):
    rc, out, err = _cli(capsys, "fit", ladder_dir, "--target", "val/text/bpb", "--target_scale", "470,200e9")
    assert rc != 0 and "outside any sensible model size" in err + out
    rc, out, err = _cli(capsys, "fit", ladder_dir, "--target", "val/nope/bpb", "--target_scale", "470M,200B")
    assert rc != 0 and "val/text/bpb" in err + out  # names the targets the runs do carry
    from tests.analysis.test_law_cli import write_sweep

    rc, out, err = _cli(capsys, "fit", write_sweep(tmp_path / "sweep"), "--target", "val/text/bpb",
                        "--target_scale", "470M,200B")
    assert rc != 0 and "two or more model sizes" in err + out


def test_law_propose_with_target_scale_writes_the_optimum_and_its_scale(ladder_dir, capsys, tmp_path):
    out_gin = tmp_path / "ladder_opt.gin"
    rc, _, err = _cli(capsys, "propose", ladder_dir, "--objective", "min val/text/bpb + val/code_web/bpb",
                        "--target_scale", "2.8B,56B", "--resamples", "20", "--output", out_gin)
    assert rc == 0, err
    side = json.loads((tmp_path / "ladder_opt.scale_law.json").read_text())
    assert side["target_scale"] == [2.8e9, 56e9] and abs(side["shares"]["code_web"] - 0.5) < 0.1
    assert "ladder_opt/mixture_spec.shares" in out_gin.read_text()


def test_report_section_on_a_ladder_with_a_failed_rung(tmp_path):
    top = [f"init-code_p{p}-{300e6 * 20:.4g}-w300" + s for p in (0, 25, 50, 75, 100) for s in ("", "__seed1")]
    root = write_ladder(tmp_path / "lad", fail=top + ["init-code_p50-1e+09-w50"])
    data = load_experiment(root)
    assert lr.is_ladder(data)
    from codemix.analysis.report import markdown_table

    text = lr.section(data, tmp_path / "img", markdown_table, resamples=40)
    assert "300M x 6B" in text and "missing (no finished run)" in text  # the failed top rung is shown
    assert "incomplete: init-code_p50-1e+09-w50" in text
    table, note = la.decision_table(data, "val/text/bpb", resamples=50)
    assert "reference: 300M x 3B" in note and "documents" in note
    row = table.set_index("rung").loc["20M x 200M"]
    assert 0 <= row["low"] <= row["decision accuracy"] <= row["high"] <= 1 and row["pairs"] == 10
    assert (tmp_path / "img" / "ladder_curves.png").exists() and (tmp_path / "img" / "ladder_optimum.png").exists()
    assert "law from smaller sizes" in text
    per = la.variant_laws(data, ["val/text/bpb"], resamples=30).set_index("mixture")
    assert per.loc["code_p0", "runs"] == 14 and "alpha" in per.loc["code_p0", "law"]


MICRO_LADDER = """\
Experiment.name = "micro_ladder"
Experiment.model_gin = "gin/models/tiny.gin"
Experiment.runtime_gin = "gin/runtime/cpu.gin"
Experiment.batch_size = 4
Experiment.sequence_length = 64
Experiment.variants = @ladder_matrix()
ladder_matrix.mixtures = ["text_only", "code_p50"]
ladder_matrix.sizes = [1, 2]
ladder_matrix.tokens_per_param = [0.0015, 0.003]
ladder_matrix.top_seeds = [0]
ladder_matrix.vocab_size = 8192
ladder_matrix.tokens_per_step = 256
Experiment.bindings = [
    "make_mesh.num_devices = 1", "LR = 3e-3", "WARMUP_STEPS = 1", "train.log_every = 1",
    "train.checkpoint_every = 100", "train.keep_checkpoints = 1", "train.progress = False",
    "HeldOutOptions.tokens_per_family = 256",
]
Experiment.eval_benchmarks = ""
"""


@pytest.mark.slow
def test_a_two_size_micro_ladder_trains_and_its_report_section_renders(tmp_path):
    from codemix.analysis.report import write_report
    from codemix.experiments import runner

    gin_path = tmp_path / "micro_ladder.gin"
    gin_path.write_text(MICRO_LADDER)
    work = tmp_path / "work"
    runner.run_experiment(str(gin_path), str(work), progress=False, gin_params=["Experiment.write_report = False"])
    data = load_experiment(work)
    assert (data.runs["status"] == "finished").all() and data.runs["params"].nunique() == 2
    report = Path(write_report(str(work), resamples=50)).read_text()
    section = report.split("## Do the small runs decide?")[1].split("\n## ")[0]
    assert "### `val/text/bpb`" in section and "decision accuracy" in section
    assert "joint law: not fitted" in section  # 8 runs cannot carry 13 parameters; said, not hidden
