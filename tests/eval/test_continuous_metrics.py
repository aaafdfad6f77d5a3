"""prob_correct and bits per byte on stubbed log-likelihoods (values checked by
hand), the gold text each benchmark kind scores, and per-example values with
their ids through results files and resume parts."""
import json
import math

import numpy as np
import pytest
import seqio

from codemix.eval import runner, scoring, tasks
from codemix.eval.sandbox import ExecResult
from codemix.model.config import ModelConfig

VOCAB = seqio.ByteVocabulary()
CFG = ModelConfig(vocab_size=384, d_model=32, num_layers=1, num_heads=2, num_kv_heads=2,
                  head_dim=16, d_ff=64)
LN2 = math.log(2.0)


@pytest.fixture
def register():
    added = []

    def add(name, category, kind, examples, **kwargs):
        tasks.register_benchmark(name, category, kind, lambda: examples, **kwargs)
        added.append(name)

    yield add
    for n in added:
        tasks.BENCHMARKS.pop(n)
        seqio.TaskRegistry.remove(n)


def stub_scores(monkeypatch, loglik: dict[str, float]) -> list[tuple[str, str]]:
    """Replace only the scorer: each request gets loglik[its continuation text];
    returns the (context, continuation) texts it was asked for."""
    seen = []

    def score(cfg, params, requests, *args, **kwargs):
        pairs = [(VOCAB.decode(list(r.context)), VOCAB.decode(list(r.continuation))) for r in requests]
        seen.extend(pairs)
        return np.array([loglik[cont] for _, cont in pairs])

    monkeypatch.setattr(scoring, "score_packed", score)
    return seen


def _evaluator(**kwargs):
    return runner.Evaluator(CFG, {}, VOCAB, runner.EvalSettings(bootstrap_resamples=50), **kwargs)


MC = [
    {"id": "q0", "contexts": ["Q0:"] * 3, "continuations": [" café", " no", " 日本"], "label": 0},
    {"id": "q1", "contexts": ["Q1:"] * 3, "continuations": [" café", " no", " 日本"], "label": 2},
]
MC_LOGLIK = {" café": -2.0, " no": -1.0, " 日本": -3.0}


def test_prob_correct_is_the_softmax_at_the_label_and_bpb_counts_utf8_bytes(register, monkeypatch):
    register("toy_cont_mc", "reasoning", "multiple_choice", MC)
    stub_scores(monkeypatch, MC_LOGLIK)
    out = _evaluator().run_full(["toy_cont_mc"])
    z = math.exp(-2.0) + math.exp(-1.0) + math.exp(-3.0)
    # " café" is 6 UTF-8 bytes (é takes 2), " 日本" is 7 (3 per character).
    expected = {"prob_correct": [math.exp(-2.0) / z, math.exp(-3.0) / z],
                "bpb": [2.0 / (LN2 * 6), 3.0 / (LN2 * 7)]}
    table = out.per_example["toy_cont_mc"]
    assert table["ids"] == ["q0", "q1"]
    for metric, values in expected.items():
        assert table[metric] == pytest.approx(values, rel=1e-12)
    by = {(r["benchmark"], r["metric"]): r for r in out.records}
    assert by[("toy_cont_mc", "prob_correct")]["value"] == pytest.approx(np.mean(expected["prob_correct"]))
    assert by[("toy_cont_mc", "bpb")]["value"] == pytest.approx(np.mean(expected["bpb"]))
    lo, hi = by[("toy_cont_mc", "bpb")]["ci"]
    assert min(expected["bpb"]) <= lo <= hi <= max(expected["bpb"])
    # The primary metric alone makes the category mean: choice 1 wins both, acc 0.
    assert by[("toy_cont_mc", "acc")]["value"] == 0.0
    assert by[("category:reasoning", "mean")]["value"] == 0.0
    # The legacy triple is still what `run` returns.
    records, seconds, details = _evaluator().run(["toy_cont_mc"])
    assert records == out.records and set(seconds) == {"toy_cont_mc"} and len(details["toy_cont_mc"]) == 2


def test_generation_bpb_scores_the_first_alias_as_the_model_would_answer(register, monkeypatch):
    qa = [{"id": "a", "prompt": "Question: Capital of France?\nAnswer:", "answers": ["Paris", "paris"]},
          {"id": "b", "prompt": "Question: Sushi's country?\nAnswer:", "answers": ["日本", "Japan"]}]
    register("toy_cont_qa", "knowledge", "generation", qa)
    monkeypatch.setattr(runner.Evaluator, "_generate", lambda self, bench, prompts, n, t: ["Paris"] * len(prompts))
    seen = stub_scores(monkeypatch, {" Paris": -3.0, " 日本": -1.5})
    out = _evaluator().run_full(["toy_cont_qa"])
    assert seen == [(qa[0]["prompt"], " Paris"), (qa[1]["prompt"], " 日本")]
    table = out.per_example["toy_cont_qa"]
    assert table["exact_match"] == [1.0, 0.0]
    assert table["bpb"] == pytest.approx([3.0 / (LN2 * 6), 1.5 / (LN2 * 7)], rel=1e-12)
    # k-shot: the gold answer still follows this example's prompt, after the shot.
    seen.clear()
    runner.Evaluator(CFG, {}, VOCAB, runner.EvalSettings(num_shots=1, bootstrap_resamples=10)).run(
        ["toy_cont_qa"], limit=1)
    context, continuation = seen[0]
    assert continuation == " Paris"
    assert context == qa[1]["prompt"] + " 日本\n\n" + qa[0]["prompt"]


class PassAll:
    """A sandbox whose checker passes every completion (code_harness.check)."""

    def run_pair(self, candidate, checker, report_limit=0):
        return ExecResult("passed", 0, ""), ExecResult("passed", 0, "", b'["verdict", true, "passed"]\n')


def test_code_bpb_scores_the_reference_solution_after_the_prompt(register, monkeypatch):
    code = [{"id": "c0", "prompt": "def f():", "program_prefix": "def f():", "tests": "assert f() == 1\n",
             "solution": "\n    return 1\n"}]
    register("toy_cont_code", "code", "code", code, stop_sequences=("\ndef",))
    monkeypatch.setattr(runner.Evaluator, "_generate", lambda self, bench, prompts, n, t: ["\n    return 1"])
    seen = stub_scores(monkeypatch, {"\n    return 1\n": -4.0})
    out = _evaluator(sandbox=PassAll()).run_full(["toy_cont_code"])
    assert seen == [("def f():", "\n    return 1\n")]
    assert out.per_example["toy_cont_code"]["bpb"] == pytest.approx([4.0 / (LN2 * 14)])
    assert set(out.per_example["toy_cont_code"]) == {"ids", "pass@1", "bpb"}


def test_code_benchmark_without_reference_solutions_reports_no_bpb(register, monkeypatch):
    code = [{"id": "c0", "prompt": "def f():", "program_prefix": "def f():", "tests": "assert f() == 1\n"}]
    register("toy_cont_code2", "code", "code", code)
    monkeypatch.setattr(runner.Evaluator, "_generate", lambda self, bench, prompts, n, t: ["\n    return 1"])
    stub_scores(monkeypatch, {})
    out = _evaluator(sandbox=PassAll()).run_full(["toy_cont_code2"])
    assert set(out.per_example["toy_cont_code2"]) == {"ids", "pass@1"}


def test_per_example_ids_round_trip_through_results_files_and_resume_parts(register, monkeypatch, tmp_path):
    register("toy_cont_mc", "reasoning", "multiple_choice", MC)
    stub_scores(monkeypatch, MC_LOGLIK)
    parts = str(tmp_path / "out.json.parts")
    first = _evaluator().run_full(["toy_cont_mc"], parts_dir=parts, parts_key={"k": 1})
    path = tmp_path / "out.json"
    runner.write_results(str(path), first.records, {"m": 1}, first.per_example)
    doc = json.loads(path.read_text())
    assert doc["records"] == first.records and doc["meta"] == {"m": 1}
    assert doc["per_example"] == first.per_example
    assert set(doc["per_example"]["toy_cont_mc"]) == {"ids", "acc", "acc_norm", "prob_correct", "bpb"}
    assert doc["per_example"]["toy_cont_mc"]["ids"] == ["q0", "q1"]

    def fail(*a, **k):
        raise AssertionError("a finished benchmark was scored again")

    monkeypatch.setattr(scoring, "score_packed", fail)
    resumed = _evaluator().run_full(["toy_cont_mc"], parts_dir=parts, parts_key={"k": 1})
    assert resumed.per_example == first.per_example and resumed.records == first.records
    loaded = runner.load_part(parts, "toy_cont_mc", {"k": 1}, None)
    assert loaded.ids == ["q0", "q1"]
    # A part written before ids were saved takes them from its details.
    part = tmp_path / "out.json.parts" / "toy_cont_mc.json"
    old = json.loads(part.read_text())
    del old["ids"]
    part.write_text(json.dumps(old))
    assert runner.load_part(parts, "toy_cont_mc", {"k": 1}, None).ids == ["q0", "q1"]
    # Without per-example values a results file is as before.
    runner.write_results(str(path), first.records)
    assert "per_example" not in json.loads(path.read_text())
