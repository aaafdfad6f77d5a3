"""Metrics on hand-made cases: exact match, rank classification, pass@k, bootstrap."""
import math

import numpy as np
import pytest

from codemix.eval import metrics


@pytest.mark.parametrize(
    "prediction, aliases, expected",
    [
        ("The Eiffel Tower", ["eiffel tower"], 1.0),
        ("eiffel tower.", ["The Eiffel Tower"], 1.0),
        ("  an   Apple! ", ["apple"], 1.0),
        ("Sunset Blvd", ["Sunset Boulevard", "Sunset Blvd."], 1.0),
        ("Paris, France", ["Paris"], 0.0),
        ("", ["Paris"], 0.0),
        ("theatre", ["atre"], 0.0),  # articles are whole words only
        # answers that normalise to "": compared by case and whitespace only,
        # and an empty prediction never matches them
        ("", ["A+", "Paris"], 0.0),
        ("  ", ["+-*/"], 0.0),
        ("The!", ["A+"], 0.0),
        ("a+", ["A+"], 1.0),
        (" +-*/ ", ["+-*/"], 1.0),
    ],
)
def test_exact_match_normalises_articles_punctuation_and_checks_every_alias(prediction, aliases, expected):
    assert metrics.exact_match(prediction, aliases) == expected


def test_normalize_answer_strips_case_punctuation_articles_whitespace():
    assert metrics.normalize_answer("  The  Quick, Brown-Fox! ") == "quick brown fox"


def test_rank_choice_uses_length_normalisation_only_when_asked():
    ll = [-10.0, -12.0]
    assert metrics.rank_choice(ll) == 0
    assert metrics.rank_choice(ll, lengths=[5, 20]) == 1  # -2.0/char vs -0.6/char


def test_oracle_scorer_gets_full_accuracy_and_constant_scorer_gets_chance():
    rng = np.random.default_rng(0)
    num_choices, n = 4, 400
    labels = np.arange(n) % num_choices
    oracle = [metrics.rank_choice(np.where(np.arange(num_choices) == y, 0.0, -5.0)) == y for y in labels]
    constant = [metrics.rank_choice(np.zeros(num_choices)) == y for y in labels]
    assert np.mean(oracle) == 1.0
    assert np.mean(constant) == pytest.approx(1 / num_choices)
    random_scores = [metrics.rank_choice(rng.normal(size=num_choices)) == y for y in labels]
    assert abs(np.mean(random_scores) - 1 / num_choices) < 0.07


@pytest.mark.parametrize("n, c, k", [(10, 0, 1), (10, 3, 1), (10, 3, 5), (20, 7, 10), (5, 5, 5), (200, 13, 100)])
def test_pass_at_k_matches_the_binomial_formula(n, c, k):
    expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_1_is_the_fraction_of_passing_samples_and_rejects_small_n():
    assert metrics.pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    assert metrics.pass_at_k(4, 2, 3) == 1.0  # every 3-subset holds a pass
    with pytest.raises(ValueError, match="at least 5 samples"):
        metrics.pass_at_k(4, 1, 5)


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    values = np.r_[np.ones(60), np.zeros(40)]
    reps = metrics.bootstrap_replicates(values, 2000, seed=0)
    lo, hi = metrics.percentile_interval(reps)
    assert lo < 0.6 < hi
    # Binomial standard error is ~0.049: the 95% interval is about +-0.096.
    assert 0.15 < hi - lo < 0.25
    assert metrics.percentile_interval(metrics.bootstrap_replicates(values, 2000, seed=0)) == [lo, hi]
    assert metrics.percentile_interval(metrics.bootstrap_replicates(np.ones(10))) == [1.0, 1.0]


def test_prob_correct_is_a_stable_softmax_at_the_label():
    ll = [-1.0, -2.0, -3.0]
    z = sum(np.exp(ll))
    assert metrics.prob_correct(ll, 1) == pytest.approx(np.exp(-2.0) / z)
    # Long continuations have log-likelihoods far below exp's range.
    assert metrics.prob_correct([-10000.0, -10000.0 - np.log(3.0)], 0) == pytest.approx(0.75)


def test_bits_per_byte_divides_by_utf8_bytes_not_characters():
    assert metrics.bits_per_byte(-np.log(2.0) * 6, " café") == pytest.approx(1.0)
    assert metrics.bits_per_byte(-7.0, " 日本") == pytest.approx(7.0 / (np.log(2.0) * 7))
    with pytest.raises(ValueError):
        metrics.bits_per_byte(-1.0, "")
