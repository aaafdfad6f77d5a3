"""Relative change and its bootstrap interval on hand-made numbers."""
import numpy as np
import pytest

from codemix.analysis.stats import (
    bootstrap_mean_interval,
    bootstrap_relative_change,
    relative_change,
)


def test_relative_change_is_percent_of_baseline():
    assert relative_change(0.6, 0.5) == pytest.approx(20.0)
    assert relative_change(0.4, 0.5) == pytest.approx(-20.0)
    assert np.isnan(relative_change(0.4, 0.0))


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
