"""Scores, paired changes and their intervals: hand-checkable cases and calibration by simulation."""
import numpy as np
import pytest
import scipy.stats

from codemix.analysis.benchmark_bootstrap import (
    bootstrap_mean_interval,
    bootstrap_relative_change,
)
from codemix.analysis.stats import (
    NOT_MEASURED,
    Change,
    mean_interval,
    paired_change,
    relative_change,
    score,
    seed_noise,
    seed_std,
    signal_to_noise,
)

# --- The case that motivated the rewrite ----------------------------------------------------------

def test_two_benchmarks_of_eight_examples_include_zero():
    # Variant 3/8 and 2/8 against baseline 5/8 and 4/8 (-44%): the benchmark-only bootstrap gave
    # [-50%, -40%]. The two models disagree on 8 of the 16 examples, 6 for B and 2 for V, which
    # an exact sign test calls p = 0.29: nothing is shown, and the interval must say so.
    variant = {"copa": np.array([[1, 1, 1, 0, 0, 0, 0, 0]]), "arc": np.array([[1, 1, 0, 0, 0, 0, 0, 0]])}
    baseline = {"copa": np.array([[1, 1, 0, 1, 1, 1, 0, 0]]), "arc": np.array([[1, 0, 1, 1, 0, 1, 0, 0]])}
    ch = paired_change(variant, baseline)
    assert ch.value == pytest.approx(100 * (5 / 16 - 9 / 16) / (9 / 16))
    assert ch.low < 0 < ch.high and not ch.excludes_zero
    assert (ch.n_benchmarks, ch.n_examples, ch.n_seeds, ch.base_seeds) == (2, 16, 1, 1)
    assert bootstrap_relative_change([[3 / 8, 2 / 8]], [[5 / 8, 4 / 8]]).excludes_zero  # the old bug
    assert ch.p_value > 0.05


# --- Hand-checkable cases ---------------------------------------------------------------------------

def test_score_is_the_mean_over_benchmarks_of_seed_and_example_means():
    scores = {"a": np.array([[1, 0], [1, 1]]), "b": np.array([[0, 1, 1, 1], [0, 0, 0, 1]])}
    assert score(scores) == pytest.approx((0.75 + 0.5) / 2)  # unweighted: b's 4 examples count as a's 2
    assert score({"a": np.array([0.2, 0.4])}) == pytest.approx(0.3)  # 1-D: one seed
    assert np.isnan(score({})) and np.isnan(score({"a": np.zeros((1, 0))}))


def test_identical_examples_and_one_seed_collapse_the_interval():
    ch = paired_change({"a": np.full((1, 5), 0.6)}, {"a": np.full((1, 5), 0.5)})
    assert (ch.value, ch.low, ch.high) == pytest.approx((20.0, 20.0, 20.0))
    assert ch.kind == "relative" and ch.excludes_zero


def test_one_benchmark_still_has_an_interval_from_its_examples():
    rng = np.random.default_rng(1)
    base = (rng.random((1, 400)) < 0.5).astype(float)
    var = (rng.random((1, 400)) < 0.5).astype(float)
    ch = paired_change({"a": var}, {"a": base})
    assert ch.high - ch.low > 5.0  # about +-2 * sqrt(0.5 / 400) / 0.5 = +-14%
    mean, lo, hi = mean_interval({"a": base})
    assert lo < mean < hi and hi - lo == pytest.approx(4 * np.sqrt(0.25 / 400), rel=0.15)


def test_absolute_kind_is_a_difference_of_scores():
    # d = V - B per example = (0, 1, 0, 0): mean 0.25, sd 0.5, se 0.25. The deviations' kurtosis is
    # 0.08203 / 0.1875^2 = 2.33, so the variance has min(3, 2 * 3 / 1.33) = 3 df: t_{0.975, 3} = 3.182.
    # One seed each: seed noise is not measured and adds nothing.
    ch = paired_change({"a": np.array([[1, 1, 0, 0]])}, {"a": np.array([[1, 0, 0, 0]])}, kind="absolute")
    half = scipy.stats.t.ppf(0.975, 3) * 0.25
    assert (ch.value, ch.low, ch.high, ch.df) == pytest.approx((0.25, 0.25 - half, 0.25 + half, 3.0))
    assert ch.kind == "absolute" and ch.seed_noise == NOT_MEASURED and not ch.seed_noise_measured


def test_pairing_by_example_narrows_the_interval():
    # V agrees with B on 95% of the examples; examples differ a lot in difficulty. Shuffling B's
    # examples keeps both scores but breaks the pairing, and the interval must widen a lot.
    rng = np.random.default_rng(2)
    p = rng.beta(0.5, 0.5, size=(3, 1000))
    base = (rng.random(p.shape) < p).astype(float)
    var = np.where(rng.random(p.shape) < 0.05, 1 - base, base)
    paired = paired_change({f"b{k}": var[k:k + 1] for k in range(3)}, {f"b{k}": base[k:k + 1] for k in range(3)})
    shuffled_base = {f"b{k}": rng.permutation(base[k])[None] for k in range(3)}
    shuffled = paired_change({f"b{k}": var[k:k + 1] for k in range(3)}, shuffled_base)
    assert paired.value == pytest.approx(shuffled.value)
    assert paired.high - paired.low < 0.4 * (shuffled.high - shuffled.low)


def test_seed_term_has_the_seed_variance_and_its_degrees_of_freedom():
    # One benchmark; V's two seeds score 0.5 and 0.7 on every example, B 0.5. Examples add nothing;
    # the seed variance is 0.02 on 1 df, relative to V's 0.6: 0.02 / 0.36. On the log scale the
    # change's variance is that times (1/2 + 1/1), and the quantile is t_{0.975, 1} = 12.71.
    var = {"a": np.array([[0.5] * 6, [0.7] * 6])}
    ch = paired_change(var, {"a": np.full((1, 6), 0.5)})
    half = scipy.stats.t.ppf(0.975, 1) * np.sqrt(0.02 / 0.36 * 1.5)
    lo, hi = 100 * np.expm1(np.log(1.2) - half), 100 * np.expm1(np.log(1.2) + half)
    assert (ch.value, ch.low, ch.high, ch.df) == pytest.approx((20.0, lo, hi, 1.0))
    assert (ch.n_seeds, ch.base_seeds) == (2, 1) and ch.seed_noise == "pooled over 1 seed group, 1 df"
    # The experiment's other variants pool eight more seed groups of the same spread: 9 df, and
    # the interval shrinks to the t_{0.975, 9} quantile.
    pooled = seed_noise([var] + [{"a": np.array([[0.5 + d] * 6, [0.7 + d] * 6]) * 1.0} for d in [0.0] * 8])
    ch9 = paired_change(var, {"a": np.full((1, 6), 0.5)}, noise=pooled)
    half9 = scipy.stats.t.ppf(0.975, 9) * np.sqrt(0.02 / 0.36 * 1.5)
    assert (ch9.low, ch9.high, ch9.df) == pytest.approx((100 * np.expm1(np.log(1.2) - half9),
                                                         100 * np.expm1(np.log(1.2) + half9), 9.0))


def test_a_zero_score_has_no_relative_interval_and_a_lone_success_stays_finite():
    ch = paired_change({"a": np.array([[1, 0, 0, 0]])}, {"a": np.array([[0, 0, 0, 0]])})
    assert np.isnan(ch.value) and np.isnan(ch.low) and np.isnan(ch.high) and not ch.excludes_zero
    # Deleting V's only success leaves V at 0: that jackknife value is taken linearised, not -inf.
    ch = paired_change({"a": np.array([[1, 0, 0, 0]])}, {"a": np.array([[0, 0, 0, 1]])})
    assert np.isfinite(ch.low) and np.isfinite(ch.high) and ch.low < 0 < ch.high


def test_empty_input_is_nan():
    for ch in (paired_change({}, {}), paired_change({"a": np.zeros((1, 0))}, {"a": np.zeros((1, 0))})):
        assert np.isnan(ch.value) and np.isnan(ch.low) and np.isnan(ch.high) and not ch.excludes_zero
    assert all(np.isnan(x) for x in mean_interval({}))


def test_misaligned_inputs_are_errors():
    with pytest.raises(ValueError, match="align them"):
        paired_change({"a": np.ones((1, 3))}, {"b": np.ones((1, 3))})
    with pytest.raises(ValueError, match="align them"):
        paired_change({"a": np.ones((1, 3))}, {"a": np.ones((1, 4))})
    with pytest.raises(ValueError, match="seed counts"):
        score({"a": np.ones((1, 3)), "b": np.ones((2, 3))})
    with pytest.raises(ValueError, match="kind"):
        paired_change({"a": np.ones((1, 3))}, {"a": np.ones((1, 3))}, kind="ratio")


def test_intervals_are_deterministic_by_default():
    rng = np.random.default_rng(4)
    v, b = {"a": rng.random((2, 50))}, {"a": rng.random((3, 50))}
    assert paired_change(v, b) == paired_change(v, b)


def test_benchmark_resampling_widens_the_interval():
    # Benchmarks that disagree (+ on one, - on the other): the fixed list's interval is about their
    # average; generalising over benchmarks must add their disagreement.
    rng = np.random.default_rng(5)
    base = {k: (rng.random((1, 500)) < 0.5).astype(float) for k in ("x", "y")}
    var = {"x": np.maximum(base["x"], rng.random((1, 500)) < 0.3), "y": base["y"] * (rng.random((1, 500)) < 0.7)}
    fixed = paired_change(var, base)
    wide = paired_change(var, base, resample_benchmarks=True)
    assert wide.resampled_benchmarks and not fixed.resampled_benchmarks
    assert wide.high - wide.low > 1.5 * (fixed.high - fixed.low)


def test_seed_std_is_the_sample_std():
    assert seed_std(np.array([1.0, 2.0, 3.0])) == pytest.approx(1.0)
    assert np.isnan(seed_std(np.array([0.5])))


def test_signal_to_noise_is_spread_of_means_over_pooled_seed_std():
    # Means 2 and 6 (spread 4); within-variant squared deviations 2 + 2 over 1 + 1 dof: pooled sd sqrt(2).
    assert signal_to_noise({"a": np.array([1.0, 3.0]), "b": np.array([5.0, 7.0])}) == pytest.approx(4 / np.sqrt(2))
    # Relative dispersion over relative std: the shared mean cancels, so scaling all scores changes nothing.
    assert signal_to_noise({"a": np.array([10.0, 30.0]), "b": np.array([50.0, 70.0])}) == pytest.approx(4 / np.sqrt(2))
    # A single-seed variant adds signal but no noise degrees of freedom.
    assert signal_to_noise({"a": np.array([1.0, 3.0]), "b": np.array([9.0])}) == pytest.approx(7 / np.sqrt(2))
    assert np.isnan(signal_to_noise({"a": np.array([1.0]), "b": np.array([2.0])}))  # noise unknown
    assert np.isnan(signal_to_noise({"a": np.array([1.0, 2.0])}))  # no signal without two variants


# --- The old API (benchmark-level scores), kept for codemix/analysis/tables.py ----------------------

def test_relative_change_is_percent_of_baseline():
    assert relative_change(0.6, 0.5) == pytest.approx(20.0)
    assert relative_change(0.4, 0.5) == pytest.approx(-20.0)
    assert np.isnan(relative_change(0.4, 0.0))


def test_change_keeps_its_positional_fields():
    ch = Change(1.0, 0.5, 1.5, 2, 1, 1)
    assert (ch.value, ch.low, ch.high, ch.n_benchmarks, ch.n_seeds, ch.base_seeds, ch.undefined) == \
        (1.0, 0.5, 1.5, 2, 1, 1, 0)
    assert ch.excludes_zero


def test_uniform_gain_has_a_collapsed_interval():
    ch = bootstrap_relative_change([[0.6, 0.6]], [[0.5, 0.5]])
    assert (ch.value, ch.low, ch.high) == pytest.approx((20.0, 20.0, 20.0))
    assert (ch.n_benchmarks, ch.n_seeds, ch.base_seeds) == (2, 1, 1)


def test_benchmarks_are_paired_so_a_constant_ratio_has_no_spread():
    base = np.array([[0.2, 0.8, 0.5]])  # very different difficulty per benchmark
    ch = bootstrap_relative_change(base * 1.1, base)
    assert (ch.value, ch.low, ch.high) == pytest.approx((10.0, 10.0, 10.0))


def test_interval_spans_disagreeing_benchmarks():
    # copa +20%, arc -20%: resamples of 2 benchmarks give -20, 0 or +20 (p = 1/4, 1/2, 1/4).
    ch = bootstrap_relative_change([0.6, 0.4], [0.5, 0.5], resamples=4000)
    assert ch.value == pytest.approx(0.0)
    assert (ch.low, ch.high) == pytest.approx((-20.0, 20.0))


def test_interval_resamples_seeds():
    # One benchmark, variant seeds 0.5 and 0.7 against 0.5: mean 0.6 (+20%); resampled
    # seed means are 0.5, 0.6 or 0.7 -> 0%, +20%, +40%.
    ch = bootstrap_relative_change([[0.5], [0.7]], [[0.5]], resamples=4000)
    assert ch.value == pytest.approx(20.0)
    assert (ch.low, ch.high) == pytest.approx((0.0, 40.0))
    assert ch.n_seeds == 2


def test_zero_baseline_replicates_are_counted_not_used():
    ch = bootstrap_relative_change([[0.5, 0.5]], [[0.0, 0.5]], resamples=1000)
    assert ch.undefined > 0
    assert ch.low <= ch.high


def test_misaligned_benchmarks_are_an_error():
    with pytest.raises(ValueError, match="align them"):
        bootstrap_relative_change([[0.5, 0.5]], [[0.5]])


def test_mean_interval_over_benchmarks():
    mean, lo, hi = bootstrap_mean_interval([[0.2, 0.4]], resamples=4000)
    assert (mean, lo, hi) == pytest.approx((0.3, 0.2, 0.4))
