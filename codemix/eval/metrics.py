"""Scoring functions shared by every benchmark: accuracy, exact match, pass@k,
continuous metrics (prob_correct, bits per byte), and bootstrap confidence
intervals.

Exact match (SQuAD / TriviaQA convention): both strings are lower-cased,
punctuation is removed, the articles "a", "an", "the" are dropped and runs of
whitespace collapse to one space; a prediction scores 1 when it equals ANY
normalised gold alias.

pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"):
with n samples of which c pass, the unbiased estimate of the chance that at
least one of k samples drawn without replacement passes is

    pass@k = 1 - C(n - c, k) / C(n, k)

computed as 1 - prod_{i = n-c+1}^{n} (1 - k / i), which never forms the huge
binomials. It is 1 when n - c < k (every k-subset holds a passing sample).

Continuous metrics (DataDecide, Magnusson et al. 2025, arXiv 2504.11393: at
small scale they predict large-scale rankings far better than accuracy):
  prob_correct  the choices' log-likelihoods turned into a distribution over
                the choices, softmax(ll)_label = exp(ll_label) / sum_j exp(ll_j),
                computed with the max subtracted (stable for ll of -1e4).
  bpb           bits per UTF-8 byte of the gold continuation:
                -ll(gold | context) / (ln 2 * len(gold.encode("utf-8"))).
                It does not depend on the tokenizer, so models with different
                vocabularies compare; lower is better.

Bootstrap interval: resample the per-example scores with replacement
`num_resamples` times (fixed seed, so a rerun gives the same interval), take
the metric of each resample, and report the 2.5th and 97.5th percentiles (the
percentile bootstrap). The replicates are kept so that a category's mean can
get an interval too: replicate b of the category mean is the mean of each
benchmark's replicate b (benchmarks are resampled independently).
"""
from __future__ import annotations

import re
import string
from collections.abc import Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"‘", "’", "´", "`", "“", "”"}


def normalize_answer(text: str) -> str:
    """Lower case, strip punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, aliases: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised alias.

    Some answers are all punctuation and articles ("A+", "+-*/" in NQ-Open and
    TriviaQA) and normalise to nothing; those are compared ignoring only case
    and whitespace, so an empty prediction never matches them."""
    pred = normalize_answer(prediction)
    for alias in aliases:
        norm = normalize_answer(alias)
        if norm:
            if pred == norm:
                return 1.0
        elif _bare(alias) and _bare(prediction) == _bare(alias):
            return 1.0
    return 0.0


def _bare(text: str) -> str:
    return " ".join(text.lower().split())


def rank_choice(loglikelihoods: Sequence[float], lengths: Sequence[int] | None = None) -> int:
    """Index of the best choice by total log-likelihood, or by log-likelihood
    per unit of length (characters) when `lengths` is given. Ties go to the
    first choice."""
    scores = np.asarray(loglikelihoods, dtype=np.float64)
    if lengths is not None:
        scores = scores / np.maximum(np.asarray(lengths, dtype=np.float64), 1.0)
    return int(np.argmax(scores))


def prob_correct(loglikelihoods: Sequence[float], label: int) -> float:
    """Softmax of the choices' log-likelihoods at `label` (see module docstring)."""
    ll = np.asarray(loglikelihoods, dtype=np.float64)
    z = np.exp(ll - ll.max())
    return float(z[label] / z.sum())


def bits_per_byte(loglikelihood: float, text: str) -> float:
    """Bits per UTF-8 byte of `text` given its log-likelihood (natural log)."""
    n = len(text.encode("utf-8"))
    if n == 0:
        raise ValueError("bits per byte needs a non-empty text.")
    return float(-loglikelihood / (np.log(2.0) * n))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples, c of them passing."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got n={n}, c={c}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def bootstrap_replicates(
    values: Sequence[float], num_resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """Means of `num_resamples` resamples (with replacement) of `values`."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return np.full(num_resamples, np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(num_resamples, x.size))
    return x[idx].mean(axis=1)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> list[float]:
    """[low, high] percentile interval of bootstrap replicates."""
    if np.all(np.isnan(replicates)):
        return [float("nan"), float("nan")]
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.nanpercentile(replicates, [tail, 100.0 - tail])
    return [float(lo), float(hi)]
