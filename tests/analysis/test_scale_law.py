"""Laws across scale: recovery from a known joint law, the optimum's coverage, LOO-rung, refusals."""
import math

import numpy as np
import pytest

from codemix.analysis import scale_law as sl
from codemix.errors import LawError

FAMS = ("text", "code")
# A joint law (Shukor et al.'s form) whose optimal code share moves with N: ~0.10 at 300M, 0.17 at 2.8B.
TRUE = {"E": 1.6, "C": (1.5, 1.5), "g": (0.5, 0.5), "a": (0.4, 1.0), "al": (0.35, 0.25), "b": (0.5, 0.5),
        "be": (0.3, 0.3)}
N0, D0 = 1e8, 2e9


def _law(n, d, s):
    h = np.column_stack([1 - s, s])
    mix = 1 / np.sum(np.array(TRUE["C"]) * np.where(h > 0, h, 1) ** np.array(TRUE["g"]) * (h > 0), axis=1)
    return (TRUE["E"] + mix + (h @ TRUE["a"]) * (n / N0) ** -(h @ TRUE["al"])
            + (h @ TRUE["b"]) * (d / D0) ** -(h @ TRUE["be"]))


def _true_optimum(n, d):
    g = np.linspace(0, 1, 401)
    return g[np.argmin(_law(np.full(401, n), np.full(401, d), g))]


def _ladder(seeds=2, sizes=(20e6, 50e6, 120e6, 300e6)):
    rows = [(n, n * t, s) for n in sizes for t in (10, 20) for s in (0, .25, .5, .75, 1.0) for _ in range(seeds)]
    return map(np.array, zip(*rows))


def test_variant_law_recovers_known_parameters_without_noise():
    n = np.repeat([10e6, 30e6, 100e6, 300e6], 3)
    d = n * np.tile([5, 20, 80], 4)
    y = 1.7 + 0.8 * (n / 1e8) ** -0.3 + 0.6 * (d / 1e9) ** -0.25
    law = sl.fit_variant(n, d, y, resamples=20)
    v = law.values()
    assert v["alpha"] == pytest.approx(0.3, rel=1e-3) and v["beta"] == pytest.approx(0.25, rel=1e-3)
    assert v["E"] == pytest.approx(1.7, rel=1e-3)
    np.testing.assert_allclose(law.predict(2.8e9, 56e9), 1.7 + 0.8 * 28 ** -0.3 + 0.6 * 56 ** -0.25, rtol=1e-5)


def test_joint_law_recovers_exponents_and_target_loss_from_a_noisy_ladder():
    n, d, s = _ladder()
    y = _law(n, d, s) + 0.01 * np.random.default_rng(0).standard_normal(len(n))
    law = sl.fit_joint(n, d, np.column_stack([1 - s, s]), y, "joint", FAMS, resamples=100)
    iv = law.param_intervals()
    for name, true in (("alpha_text", .35), ("alpha_code", .25), ("beta_text", .3), ("beta_code", .3)):
        assert iv[name][1] <= true <= iv[name][2], (name, iv[name])
    lo, hi = law.interval(2.8e9, 56e9, [[0.8, 0.2]])
    assert lo[0] <= _law(np.array([2.8e9]), np.array([56e9]), np.array([0.2]))[0] <= hi[0]
    assert law.bootstrap == "seeds" and law.n_cells == 40


def test_optimum_interval_at_a_larger_target_covers_the_truth():
    """The full simulation (benchmarks/scale_law_coverage.py: 100 ladders, 200 resamples) held the truth in
    its 95% interval in 92 of 100; this is 10 of them (deterministic), a check that it still covers."""
    n, d, s = _ladder()
    truth = _true_optimum(2.8e9, 56e9)
    hits, widths = 0, []
    for r in range(10):
        y = _law(n, d, s) + 0.01 * np.random.default_rng(r).standard_normal(len(n))
        law = sl.fit_joint(n, d, np.column_stack([1 - s, s]), y, "joint", FAMS, resamples=100, rng_seed=r, loo=False)
        o = sl.optimum({"loss": law}, 2.8e9, 56e9)
        hits += o.low["code"] <= truth <= o.high["code"]
        widths.append(o.high["code"] - o.low["code"])
    assert hits >= 8
    assert np.median(widths) < 0.3  # an interval over the whole sweep would cover trivially


def test_leave_one_rung_out_prefers_the_joint_form_when_the_optimum_moves():
    n, d, s = _ladder()
    y = _law(n, d, s) + 0.005 * np.random.default_rng(1).standard_normal(len(n))
    h = np.column_stack([1 - s, s])
    joint = sl.fit_joint(n, d, h, y, "joint", FAMS, resamples=10)
    additive = sl.fit_joint(n, d, h, y, "additive", FAMS, resamples=10)
    assert joint.loo < additive.loo
    curve = sl.optimum_curve({"loss": joint}, [50e6, 300e6, 2.8e9], 20, family="code")
    assert curve[0][1] < curve[-1][1]  # the optimum moves toward more code with size, as the truth does
    flat = sl.optimum_curve({"loss": additive}, [50e6, 300e6, 2.8e9], 20, family="code")
    assert len({round(c[1], 6) for c in flat}) == 1  # additive: the same optimum at every size


def test_backtest_predicts_the_top_rung_from_the_lower_ones():
    n, d, s = _ladder()
    y = _law(n, d, s) + 0.005 * np.random.default_rng(2).standard_normal(len(n))
    law = sl.fit_joint(n, d, np.column_stack([1 - s, s]), y, "joint", FAMS, resamples=10, loo=False)
    low, rmse = sl.backtest(law, n, d, np.column_stack([1 - s, s]), y, resamples=10)
    assert max(low.sizes) == 120e6 and rmse < 0.05


def test_a_ladder_with_one_size_or_one_budget_is_refused_naming_what_is_missing():
    n, d, s = _ladder(seeds=1, sizes=(50e6,))
    with pytest.raises(LawError, match="two model sizes"):
        sl.fit_joint(n, d, np.column_stack([1 - s, s]), _law(n, d, s), "joint", FAMS)
    n = np.array([1e7, 1e7, 3e7, 3e7, 1e8, 1e8])
    with pytest.raises(LawError, match="two token budgets"):
        sl.fit_variant(n, np.full(6, 1e9), np.linspace(3, 2, 6))


def test_target_scale_is_parsed_and_absurd_ones_are_refused():
    assert sl.parse_scale("470M,200B") == (470e6, 200e9)
    assert sl.parse_scale("2.8e9, 56e9") == (2.8e9, 56e9)
    with pytest.raises(LawError, match="outside any sensible model size"):
        sl.parse_scale("470,200e9")
    with pytest.raises(LawError, match="outside any sensible budget"):
        sl.parse_scale("470e6,1e20")
    with pytest.raises(LawError, match="write N,D"):
        sl.parse_scale("470e6")


def test_accuracy_sigmoid_fits_above_chance_and_refuses_at_chance():
    loss = np.linspace(2.0, 4.0, 12)
    acc = 0.25 + 0.6 / (1 + np.exp(3.0 * (loss - 2.8)))
    sig = sl.fit_accuracy(loss, acc, chance=0.25, resamples=20)
    np.testing.assert_allclose(sig.predict(2.5), 0.25 + 0.6 / (1 + math.exp(3.0 * -0.3)), atol=1e-3)
    assert sig.n_below_chance == int(np.sum(acc <= 0.27))
    with pytest.raises(LawError, match="above chance"):
        sl.fit_accuracy(loss, np.full(12, 0.25), chance=0.25)
