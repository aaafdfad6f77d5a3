"""Calibration of codemix/analysis/stats.py's intervals against simulations whose answer is known.

Two kinds of data, as an experiment has them:
  * held-out-like: n documents whose levels are lognormal (log-sd up to 1, heavy
    tails), each seed scaling all of a model's values by (1 + seed_sd% * z), each
    (seed, document) cell by (1 + 5% * z); the variant is (1 + effect) times the
    baseline, so the true relative change is 100 * effect;
  * benchmark-like: n 0/1 answers with difficulty 0.15 + 0.5 * Beta(2, 2), each
    seed shifting a model's probabilities by seed_sd points; the variant's are
    (1 + effect) times the baseline's (never clipped at these settings).
Every experiment also has 6 other variants with the same seed count and noise
(the pooled seed variance's other groups, as a study matrix has them).

A config's coverage over S simulations has binomial sd sqrt(.95 * .05 / S): the
test asserts each config within 3.3 sd of 95% (about 1 false alarm in 1,000
configs), and the pooled rate over all configs within the issue's 93-97%.
Measured (S = 300 per config, this file's seeds) in the docstrings below.
"""
from __future__ import annotations

import numpy as np
import pytest

from codemix.analysis.stats import paired_change, seed_noise

OTHER_GROUPS = 6


def heldout_experiment(rng, n_docs, doc_sd, seed_sd, seeds, effect):
    levels = 1.5 * np.exp(rng.normal(0.0, doc_sd, n_docs))

    def side(ratio, r):
        seed = 1 + seed_sd / 100 * rng.standard_normal(r)
        cell = 1 + 0.05 * rng.standard_normal((r, n_docs))
        return {"heldout:text": ratio * levels[None, :] * seed[:, None] * cell}

    v, b = side(1 + effect, seeds[0]), side(1.0, seeds[1])
    return v, b, [side(1 + rng.uniform(-0.2, 0.2), seeds[0]) for _ in range(OTHER_GROUPS)]


def benchmark_experiment(rng, n, seed_sd, seeds, effect):
    p = 0.15 + 0.5 * rng.beta(2, 2, n)

    def side(ratio, r):
        shift = seed_sd / 100 * np.clip(rng.standard_normal(r), -3, 3)
        prob = ratio * p[None, :] + shift[:, None]
        assert 0 <= prob.min() and prob.max() <= 1  # else clipping would move the truth
        return {"bench": (rng.random(prob.shape) < prob).astype(np.float64)}

    v, b = side(1 + effect, seeds[0]), side(1.0, seeds[1])
    return v, b, [side(1 + rng.uniform(-0.2, 0.2), seeds[0]) for _ in range(OTHER_GROUPS)]


def coverage(make, sims, effect, seed=0, **kw) -> float:
    rng = np.random.default_rng(seed)
    hits = total = 0
    for _ in range(sims):
        v, b, others = make(rng, effect=effect, **kw)
        ch = paired_change(v, b, noise=seed_noise([v, b, *others]))
        if np.isfinite(ch.low):  # a relative change needs a positive baseline score
            total += 1
            hits += ch.low <= 100 * effect <= ch.high
    return hits / total


SIMS = 300
BAND = 3.3 * np.sqrt(0.95 * 0.05 / SIMS)
HELDOUT = [{"n_docs": n, "doc_sd": d, "seed_sd": s, "seeds": r}
           for n, d in ((15, 1.0), (15, 0.3), (200, 1.0)) for s in (0, 1, 3) for r in ((2, 2), (3, 3), (4, 4))]
BENCH = [{"n": n, "seed_sd": s, "seeds": r} for n in (8, 20, 200, 2000) for s in (0, 3) for r in ((2, 2), (4, 4))]


@pytest.mark.slow
def test_intervals_cover_at_the_nominal_rate_across_seeds_documents_and_benchmark_sizes():
    """27 held-out and 16 benchmark configs, null and +10% effects: 86 x 300 simulated experiments.

    Measured here: pooled coverage 95.9%; lowest config 92.7% (held-out, 200 documents, log-sd 1,
    2 seeds, seed sd 3), highest 99.7%. Benchmarks of 8-20 examples are conservative (97-100% in an
    earlier run of this grid: the jackknife of a ratio of few 0/1 answers is wide).
    """
    rates = []
    for i, cfg in enumerate(HELDOUT):
        for effect in (0.0, 0.1):
            rates.append(("heldout", cfg, effect, coverage(heldout_experiment, SIMS, effect, seed=i, **cfg)))
    for i, cfg in enumerate(BENCH):
        for effect in (0.0, 0.1):
            rates.append(("bench", cfg, effect, coverage(benchmark_experiment, SIMS, effect, seed=100 + i, **cfg)))
    pooled = float(np.mean([r for *_, r in rates]))
    worst = min(rates, key=lambda x: x[-1])
    print(f"\npooled coverage {pooled:.3f} over {len(rates)} configs; lowest {worst}; "
          f"highest {max(r for *_, r in rates):.3f}")
    assert 0.93 <= pooled <= 0.97
    for kind, cfg, effect, rate in rates:
        assert 0.95 - BAND <= rate <= 1.0, (kind, cfg, effect, rate)


@pytest.mark.slow
def test_a_one_seed_comparison_borrows_the_seed_noise_other_variants_measured():
    """V and B with one seed each, six other variants with two: the pooled seed variance covers.
    Without any seed replication it cannot (seed noise is then 'not measured', and the findings
    withhold verdicts): measured 60% and below at seed sd 3 points."""
    def make(rng, effect, **kw):
        v, b, _ = heldout_experiment(rng, effect=effect, seeds=(1, 1), **kw)
        others = [heldout_experiment(rng, effect=0.0, seeds=(2, 2), **kw)[0] for _ in range(OTHER_GROUPS)]
        return v, b, others

    pooled = coverage(make, SIMS, 0.1, n_docs=60, doc_sd=0.5, seed_sd=3)
    rng = np.random.default_rng(0)
    v, b, others = heldout_experiment(rng, effect=0.0, n_docs=60, doc_sd=0.5, seed_sd=3, seeds=(1, 1))
    alone = paired_change(v, b, noise=seed_noise([v, b, *others]))
    print(f"\none seed each, seed noise pooled from two-seed variants: coverage {pooled:.3f}")
    assert 0.95 - BAND <= pooled <= 1.0
    assert not alone.seed_noise_measured and alone.seed_noise.startswith("seed noise not measured")
