"""The runner end to end on hand-made benchmarks: oracle and constant scorers,
k-shot prompts, exact match, code execution, records and category means."""
import numpy as np
import pytest
import seqio

from codemix.eval import runner, scoring, tasks
from codemix.model import decoder
from codemix.model.config import ModelConfig

VOCAB = seqio.ByteVocabulary()
CFG = ModelConfig(vocab_size=384, d_model=32, num_layers=1, num_heads=2, num_kv_heads=2,
                  head_dim=16, d_ff=64)


@pytest.fixture
def toy_benchmarks():
    labels = [i % 4 for i in range(40)]
    mc = [{"id": str(i), "contexts": [f"Q{i}:"] * 4,
           "continuations": [" gold*" if j == y else f" wrong{j}" for j in range(4)], "label": y}
          for i, y in enumerate(labels)]
    names = {
        "toy_mc": tasks.register_benchmark("toy_mc", "reasoning", "multiple_choice", lambda: mc),
        "toy_mc2": tasks.register_benchmark("toy_mc2", "reasoning", "multiple_choice", lambda: mc[:20]),
    }
    yield names
    for n in names:
        tasks.BENCHMARKS.pop(n)
        seqio.TaskRegistry.remove(n)


def _evaluator(**settings):
    params = decoder.init_params(CFG)
    return runner.Evaluator(CFG, params, VOCAB, runner.EvalSettings(bootstrap_resamples=200, **settings))


def test_oracle_scorer_gets_100_percent_and_constant_scorer_gets_chance(toy_benchmarks, monkeypatch):
    def oracle(cfg, params, requests, *args, **kwargs):
        return np.array([0.0 if "*" in VOCAB.decode(list(r.continuation)) else -9.0 for r in requests])

    monkeypatch.setattr(scoring, "score_packed", oracle)
    records = _evaluator().run(["toy_mc", "toy_mc2"], run_name="r", step=7)[0]
    by = {(r["benchmark"], r["metric"]): r for r in records}
    assert by[("toy_mc", "acc")]["value"] == 1.0 and by[("toy_mc", "acc")]["n"] == 40
    assert by[("toy_mc", "acc")]["ci"] == [1.0, 1.0]
    assert by[("category:reasoning", "mean")]["value"] == 1.0
    assert by[("category:reasoning", "mean")]["n"] == 2
    assert all(r["run"] == "r" and r["step"] == 7 for r in records)

    monkeypatch.setattr(scoring, "score_packed", lambda cfg, params, requests, *a, **k: np.zeros(len(requests)))
    records = _evaluator().run(["toy_mc"])[0]
    acc = next(r for r in records if r["metric"] == "acc")
    assert acc["value"] == pytest.approx(0.25)  # always choice 0; labels cycle through 4
    lo, hi = acc["ci"]
    assert lo < 0.25 < hi


def test_real_model_scores_are_valid_probabilities_and_respect_limit(toy_benchmarks):
    records = _evaluator(row_len=64, batch_size=4).run(["toy_mc"], limit=6)[0]
    acc = next(r for r in records if r["metric"] == "acc")
    assert acc["n"] == 6 and 0.0 <= acc["value"] <= 1.0


def test_k_shot_prompts_are_deterministic_and_exclude_the_example(toy_benchmarks, monkeypatch):
    seen = []

    def capture(cfg, params, requests, *args, **kwargs):
        seen.append([VOCAB.decode(list(r.context)) for r in requests])
        return np.zeros(len(requests))

    monkeypatch.setattr(scoring, "score_packed", capture)
    _evaluator(num_shots=2).run(["toy_mc"], limit=3)
    _evaluator(num_shots=2).run(["toy_mc"], limit=3)
    _evaluator(num_shots=2, fewshot_seed=99).run(["toy_mc"], limit=3)
    assert seen[0] == seen[1] and seen[0] != seen[2]
    first = seen[0][0]  # example 0, choice 0
    assert first.endswith("Q0:") and first.count("gold*") == 2 and "Q0:" not in first[:-3]


def test_generation_benchmark_uses_exact_match_and_code_runs_tests(monkeypatch):
    qa = [{"id": "0", "prompt": "Q: capital of France?\nA:", "answers": ["Paris"]},
          {"id": "1", "prompt": "Q: 2+2?\nA:", "answers": ["four", "4"]}]
    code = [{"id": "0", "prompt": "def f():\n", "program_prefix": "def f():\n",
             "tests": "assert f() == 1\n"}]
    tasks.register_benchmark("toy_qa", "knowledge", "generation", lambda: qa)
    tasks.register_benchmark("toy_code", "code", "code", lambda: code, stop_sequences=("\ndef",))
    answers = iter([" The Paris.\nQ:", " 5", "    return 1\ndef g():"])

    def fake_generate(self, bench, prompts, num_samples, temperature):
        return [decode_stop(bench, next(answers)) for _ in range(len(prompts) * num_samples)]

    def decode_stop(bench, text):
        from codemix.model.decode import StopSequences
        return StopSequences(bench.stop_sequences, None).truncate(text)

    # The test's own trusted programs run without bubblewrap (rlimits and a
    # timeout only), through the real harness: the pass is judged from the
    # program's report, not its exit status alone.
    from codemix.eval.sandbox import Sandbox
    box = Sandbox(timeout_s=20, workers=1, unsafe_unsandboxed=True)

    monkeypatch.setattr(runner.Evaluator, "_generate", fake_generate)
    # The gold-answer bpb is the only scoring call; its values are tested in
    # test_continuous_metrics.py.
    monkeypatch.setattr(scoring, "score_packed", lambda cfg, params, requests, *a, **k: -np.ones(len(requests)))
    try:
        ev = runner.Evaluator(CFG, {}, VOCAB, runner.EvalSettings(bootstrap_resamples=100), sandbox=box)
        records, _, details = ev.run(["toy_qa", "toy_code"])
    finally:
        for n in ("toy_qa", "toy_code"):
            tasks.BENCHMARKS.pop(n)
            seqio.TaskRegistry.remove(n)
    by = {(r["benchmark"], r["metric"]): r["value"] for r in records}
    assert by[("toy_qa", "exact_match")] == 0.5
    assert [d["prediction"] for d in details["toy_qa"]] == ["The Paris.", "5"]
    assert by[("toy_code", "pass@1")] == 1.0
    assert by[("category:code", "mean")] == 1.0


def test_finished_benchmarks_are_saved_and_reloaded_not_rescored(toy_benchmarks, tmp_path, monkeypatch):
    parts = str(tmp_path / "results.json.parts")
    key = {"checkpoint": "/ckpt", "num_shots": 0}
    first = _evaluator(row_len=64, batch_size=4).run(["toy_mc", "toy_mc2"], limit=5, run_name="r",
                                                      parts_dir=parts, parts_key=key)[0]

    def fail(*a, **k):
        raise AssertionError("a finished benchmark was scored again")

    monkeypatch.setattr(scoring, "score_packed", fail)
    again = _evaluator().run(["toy_mc", "toy_mc2"], limit=5, run_name="r", parts_dir=parts, parts_key=key)[0]
    assert again == first
    # Other settings (here the limit) do not reuse the saved scores.
    with pytest.raises(AssertionError, match="scored again"):
        _evaluator().run(["toy_mc"], limit=6, parts_dir=parts, parts_key=key)
