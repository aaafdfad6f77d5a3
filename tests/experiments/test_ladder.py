"""Ladder experiments: sizes from one knob, budgets per parameter, refusals, the top rung's own seeds."""
import pytest

from codemix.experiments import ladder, matrix
from codemix.model.config import ModelConfig
from codemix.model.info import count_params


def test_sizes_follow_one_rule_and_count_their_parameters():
    assert ladder.size_shape(3) == {"d_model": 192, "num_layers": 4, "num_heads": 3, "num_kv_heads": 3,
                                    "head_dim": 64, "d_ff": 512}
    for w in (1, 2, 5, 20):
        s = ladder.size_shape(w)
        assert s["num_heads"] * s["head_dim"] == s["d_model"] and s["d_ff"] % 64 == 0
        assert ladder.size_params(w, 32768, False) == count_params(ModelConfig(vocab_size=32768,
                                                                               tie_embeddings=False, **s))[0]
    with pytest.raises(ValueError, match="integer >= 1"):
        ladder.size_shape(0)


def test_ladder_budgets_are_tokens_per_parameter_in_whole_steps_and_the_top_rung_has_its_seeds():
    vs = ladder.ladder_matrix(["text_only", "code_p50"], [2, 1], [0.04, 0.08], top_seeds=[0, 1], seeds=[0],
                              vocab_size=8192, tokens_per_step=2048)
    assert [v.name for v in vs][:2] == ["text_only@w1x0.04", "code_p50@w1x0.04"]
    n1 = ladder.size_params(1, 8192)
    v = vs[0]
    assert v.stages[0].tokens == round(0.04 * n1 / 2048) * 2048 and v.stages[0].size == 1
    runs = matrix.expand(vs, seeds=[0])
    top = [r for r in runs if r.stage.size == 2]
    assert len(top) == 2 * 2 * 2 and {r.seed for r in top} == {0, 1}
    assert {r.seed for r in runs if r.stage.size == 1} == {0}
    assert runs[0].name == "init-text_only-24.58K-w1"


def test_a_ladder_with_one_size_or_one_budget_is_refused_naming_what_is_missing():
    with pytest.raises(ValueError, match=r"a second model size \(ladder_matrix.sizes = \[2\]\)"):
        ladder.ladder_matrix(["text_only"], [2], [0.04, 0.08])
    with pytest.raises(ValueError, match="a second token budget per size"):
        ladder.ladder_matrix(["text_only"], [1, 2], [0.04])
    with pytest.raises(ValueError, match="round to the same number"):
        ladder.ladder_matrix(["text_only"], [1, 2], [0.04, 0.0405])


def test_runs_of_a_ladder_rung_bind_its_shape(tmp_path):
    from codemix.experiments import runner

    exp = runner.Experiment(model_gin="gin/models/tiny.gin", variants=[], batch_size=8, sequence_length=256,
                            bindings=("LR = 1e-3",))
    run = matrix.expand(ladder.ladder_matrix(["text_only"], [1, 3], [0.04, 0.08]))[-1]
    b = runner.run_bindings(exp, run, tmp_path)
    assert "ModelConfig.d_model = 192" in b and b.index("ModelConfig.d_model = 192") < b.index("LR = 1e-3")
