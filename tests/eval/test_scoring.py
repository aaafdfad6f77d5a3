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


def _choices(n_questions, n_choices, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_questions):
        ctx = tuple(rng.integers(3, 300, size=rng.integers(1, 40)).tolist())
        out += [scoring.Request(ctx, tuple(rng.integers(3, 300, size=rng.integers(1, 15)).tolist()))
                for _ in range(n_choices)]
    return out


def test_shared_contexts_score_like_requests_alone(params):
    # 4-choice questions, one 12-choice question too big for one row (split),
    # and singletons; rows of 64 with growth up to 128.
    reqs = _choices(6, 4, seed=2) + _choices(1, 12, seed=3) + _requests(5, seed=4)
    packed = scoring.score_packed(CFG, params, reqs, row_len=64, batch_size=2, max_row_len=128)
    naive = scoring.score_naive(CFG, params, reqs)
    np.testing.assert_allclose(packed, naive, rtol=1e-4, atol=1e-4)


def test_a_context_is_stored_once_per_group_and_siblings_are_invisible(params):
    reqs = _choices(3, 4, seed=5)
    arrays, spans, truncated = scoring.pack(reqs, row_len=256)
    assert truncated == 0
    slots = int((arrays["segment_ids"] > 0).sum())
    contexts = {r.context for r in reqs}
    assert slots == sum(len(c) - 1 for c in contexts) + sum(len(r.continuation) for r in reqs)
    # Changing one choice's tokens leaves its siblings' scores unchanged.
    before = scoring.score_packed(CFG, params, reqs, row_len=256, batch_size=1)
    changed = list(reqs)
    changed[1] = scoring.Request(reqs[1].context, tuple((t * 7) % 290 + 3 for t in reqs[1].continuation))
    after = scoring.score_packed(CFG, params, changed, row_len=256, batch_size=1)
    keep = [i for i in range(len(reqs)) if i != 1]
    np.testing.assert_allclose(after[keep], before[keep], rtol=1e-5, atol=1e-5)
    assert abs(after[1] - before[1]) > 1e-3


def test_too_long_request_in_a_shared_group_is_truncated_alone(params):
    ctx = tuple(range(3, 63))  # 60 tokens
    reqs = [scoring.Request(ctx, (5, 6)), scoring.Request(ctx, tuple(range(100, 110)))]
    groups, truncated = scoring.group_requests(reqs, 64)
    assert truncated == 1
    sizes = sorted(g.size for g in groups)
    assert sizes == [61, 64]  # the short one keeps its context; the long one is cut to fit
