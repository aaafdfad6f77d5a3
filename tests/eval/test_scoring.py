"""Packed log-likelihood scoring equals scoring each request alone."""
import jax
import numpy as np
import pytest

from codemix.eval import scoring
from codemix.model import decoder
from codemix.model.config import ModelConfig

CFG = ModelConfig(vocab_size=300, d_model=64, num_layers=2, num_heads=4, num_kv_heads=4,
                  head_dim=16, d_ff=128)


@pytest.fixture(scope="module")
def params():
    return jax.jit(lambda: decoder.init_params(CFG.replace(init_std=0.2), seed=0))()


def _requests(n, seed=0):
    rng = np.random.default_rng(seed)
    return [scoring.Request(tuple(rng.integers(3, 300, size=rng.integers(1, 30)).tolist()),
                            tuple(rng.integers(3, 300, size=rng.integers(1, 12)).tolist()))
            for _ in range(n)]


def test_packed_scores_equal_one_at_a_time_scores(params):
    reqs = _requests(25)
    packed = scoring.score_packed(CFG, params, reqs, row_len=64, batch_size=4)
    naive = scoring.score_naive(CFG, params, reqs)
    np.testing.assert_allclose(packed, naive, rtol=1e-4, atol=1e-4)
    assert np.all(packed < 0)


def test_packing_puts_several_requests_in_a_row_with_separate_segments():
    reqs = _requests(40, seed=1)
    arrays, spans, truncated = scoring.pack(reqs, row_len=128)
    assert truncated == 0
    rows = arrays["inputs"].shape[0]
    total = sum(len(r.context) + len(r.continuation) - 1 for r in reqs)
    assert rows == pytest.approx(np.ceil(total / 128), abs=1)  # nearly full rows
    for req, (row, a, b) in zip(reqs, spans):
        assert b - a == len(req.continuation)
        np.testing.assert_array_equal(arrays["targets"][row, a:b], req.continuation)
        seg = arrays["segment_ids"][row, a]
        assert seg > 0 and np.all(arrays["segment_ids"][row, a:b] == seg)
        # positions restart per request: the last target slot has position len(seq) - 2
        assert arrays["positions"][row, b - 1] == len(req.context) + len(req.continuation) - 2


def test_long_requests_keep_their_continuation_and_are_counted():
    req = scoring.Request(tuple(range(3, 103)), (7, 8, 9))
    arrays, spans, truncated = scoring.pack([req], row_len=32)
    assert truncated == 1
    row, a, b = spans[0]
    np.testing.assert_array_equal(arrays["targets"][row, a:b], [7, 8, 9])
    with pytest.raises(ValueError, match="non-empty continuation"):
        scoring.pack([scoring.Request((1, 2), ())], 32)
