"""Schedules have their specified shapes; weight decay skips norms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codemix.train.optimizer import decay_mask, make_optimizer, make_schedule


def _values(schedule, n):
    return np.array([float(schedule(i)) for i in range(n + 1)])


def test_cosine_warms_up_then_decays_to_min_ratio():
    v = _values(make_schedule(100, "cosine", peak=1.0, warmup_steps=10, min_ratio=0.1), 100)
    np.testing.assert_allclose(v[:11], np.linspace(0, 1, 11), atol=1e-6)
    assert np.all(np.diff(v[10:]) <= 1e-7)
    np.testing.assert_allclose(v[55], 0.1 + 0.9 * 0.5, atol=1e-6)  # halfway through the cosine
    np.testing.assert_allclose(v[100], 0.1, atol=1e-6)


def test_linear_anneals_to_zero():
    v = _values(make_schedule(50, "linear", peak=2e-3), 50)
    np.testing.assert_allclose(v[0], 2e-3, rtol=1e-6)
    np.testing.assert_allclose(v[25], 1e-3, rtol=1e-5)
    assert v[50] == 0.0


def test_constant_after_warmup():
    v = _values(make_schedule(30, "constant", peak=0.5, warmup_steps=5), 30)
    np.testing.assert_allclose(v[5:], 0.5)
    np.testing.assert_allclose(v[2], 0.2, atol=1e-6)


def test_wsd_is_stable_then_decays_in_the_last_fraction():
    v = _values(make_schedule(100, "wsd", peak=1.0, warmup_steps=10, min_ratio=0.0,
                              decay_fraction=0.2), 100)
    np.testing.assert_allclose(v[10:81], 1.0)
    np.testing.assert_allclose(v[90], 0.5, atol=1e-6)
    np.testing.assert_allclose(v[100], 0.0, atol=1e-6)


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="kind='cosin'"):
        make_schedule(10, "cosin")


def test_weight_decay_skips_norms():
    params = {"w": jnp.ones((3, 3)), "norm": {"scale": jnp.ones((3,))}}
    assert decay_mask(params) == {"w": True, "norm": {"scale": False}}
    opt = make_optimizer(lambda _: 0.1, weight_decay=0.5, clip_norm=0.0)
    state = opt.init(params)
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = opt.update(zero_grads, state, params)
    np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * np.ones((3, 3)), rtol=1e-6)
    np.testing.assert_allclose(updates["norm"]["scale"], 0.0)


def test_global_norm_clipping_scales_what_adam_sees():
    params = {"w": jnp.zeros((4,))}
    grads = {"w": jnp.full((4,), 10.0)}  # global norm 20
    opt = make_optimizer(lambda _: 1.0, weight_decay=0.0, clip_norm=1.0, b1=0.9)
    _, state = opt.update(grads, opt.init(params), params)
    mu = state[1][0].mu["w"]
    np.testing.assert_allclose(mu, 0.1 * 10.0 / 20.0, rtol=1e-6)  # (1-b1) * clipped grad
    unclipped = make_optimizer(lambda _: 1.0, weight_decay=0.0, clip_norm=0.0, b1=0.9)
    _, state = unclipped.update(grads, unclipped.init(params), params)
    np.testing.assert_allclose(state[0][0].mu["w"], 1.0, rtol=1e-6)
