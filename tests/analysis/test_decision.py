"""Decision accuracy against hand computation (ties included), its bootstrap, SNR and seeds needed."""
import math

import numpy as np
import pandas as pd
import pytest

from codemix.analysis import decision as dc


def test_agreement_equals_hand_computation_with_ties():
    top = {"a": 3.0, "b": 2.0, "c": 1.0, "d": 1.0}
    rung = {"a": 2.5, "b": 2.5, "c": 0.5, "d": 0.9}
    # Pairs: ab top a>b, rung tie -> 1/2; ac right; ad right; bc right; bd right; cd tied at the top -> out.
    acc, pairs, tied_top, tied_rung = dc.agreement(rung, top)
    assert (pairs, tied_top, tied_rung) == (5, 1, 1)
    assert acc == pytest.approx(4.5 / 5)
    acc, *_ = dc.agreement({"a": 1.0, "b": 2.0, "c": 3.0, "d": 0.0}, top)
    # ab wrong, ac wrong, ad right, bc wrong, bd right -> 2 of 5.
    assert acc == pytest.approx(2 / 5)


def _table(means: dict, seeds: int, examples: int, noise: float, rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    ex = rng.standard_normal(examples)  # shared example effects: paired across every run
    rows = []
    for (rung, variant), m in means.items():
        for s in range(seeds):
            seed_effect = noise * rng.standard_normal()
            for i in range(examples):
                rows.append((rung, variant, s, f"e{i}", m + ex[i] + seed_effect))
    return pd.DataFrame(rows, columns=["rung", "variant", "seed", "id", "value"])


def test_decision_accuracy_bootstrap_is_exact_without_seed_noise_and_wide_with_it():
    means = {("small", "a"): 1.0, ("small", "b"): 2.0, ("small", "c"): 3.0,
             ("large", "a"): 1.5, ("large", "b"): 3.5, ("large", "c"): 2.5}
    out = dc.decision_accuracy(_table(means, 2, 30, 0.0), "large", resamples=200)
    # a<b, a<c right; b<c wrong at the small rung -> 2/3, and the paired example draw cannot change it.
    assert out["small"].accuracy == pytest.approx(2 / 3)
    assert (out["small"].low, out["small"].high) == pytest.approx((2 / 3, 2 / 3))
    assert out["large"].accuracy == 1.0
    noisy = dc.decision_accuracy(_table(means, 3, 30, 1.0, rng_seed=3), "large", resamples=300)
    assert noisy["small"].high - noisy["small"].low > 0.3


def test_heineman_snr_and_seed_snr_by_hand():
    final = {"a": 1.0, "b": 1.2, "c": 0.8}
    assert dc.relative_dispersion(final.values()) == pytest.approx(0.4)
    curve = [5.0, 1.0, 1.1, 0.9, 1.0, 1.0]  # last 5: sd 0.0707, mean 1.0
    assert dc.checkpoint_noise(curve, 5) == pytest.approx(np.std([1.0, 1.1, 0.9, 1.0, 1.0], ddof=1))
    assert dc.snr(final, curve, 5) == pytest.approx(0.4 / np.std([1.0, 1.1, 0.9, 1.0, 1.0], ddof=1))
    per = {"a": [0.9, 1.1], "b": [1.1, 1.3], "c": [0.7, 0.9]}  # pooled sd sqrt(0.02 * 3 / 3) = 0.1414
    assert dc.seed_snr(per) == pytest.approx(0.4 / math.sqrt(0.02))


def test_seeds_needed_by_the_normal_model():
    # One pair, difference 1, seed sd 1: P = Phi(1 / sqrt(2 / R)) >= 0.8 first at R = 2 (R = 1 gives 0.76).
    assert dc.predicted_accuracy({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 0.0}, 1.0, 1) == pytest.approx(0.7602, abs=1e-4)
    assert dc.seeds_needed({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 0.0}, 1.0) == 2
    # The rung orders the pair against the top: no number of seeds there reaches 80%.
    assert dc.seeds_needed({"a": 0.0, "b": 1.0}, {"a": 1.0, "b": 0.0}, 1.0) is None
