"""Decoder behaviour: causality, packing isolation, config variants, sizes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
from codemix import config as cm_config
from codemix.model import decoder, info
from codemix.model.config import ModelConfig

# Jitted once per config: eager op-by-op dispatch is slow on CPU.
apply = jax.jit(decoder.apply, static_argnums=0)

MICRO = ModelConfig(vocab_size=97, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
                    head_dim=16, d_ff=128)


def _tokens(seed, shape, vocab=97):
    return jax.random.randint(jax.random.key(seed), shape, 1, vocab)


def test_future_tokens_do_not_change_past_logits():
    params = decoder.init_params(MICRO, seed=1)
    tokens = _tokens(0, (2, 24))
    changed = tokens.at[:, 12:].set((tokens[:, 12:] + 5) % 97)
    a, _ = apply(MICRO, params, tokens)
    b, _ = apply(MICRO, params, changed)
    np.testing.assert_allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert float(jnp.abs(a[:, 12:] - b[:, 12:]).max()) > 1e-3


def test_packed_row_equals_documents_alone():
    params = decoder.init_params(MICRO, seed=2)
    docs = [_tokens(s, (1, n)) for s, n in ((3, 7), (4, 11), (5, 5))]
    row = jnp.concatenate(docs + [jnp.zeros((1, 9), jnp.int32)], axis=1)  # 9 pad slots
    seg = jnp.concatenate([jnp.full((1, d.shape[1]), i + 1) for i, d in enumerate(docs)]
                          + [jnp.zeros((1, 9), jnp.int32)], axis=1)
    pos = jnp.concatenate([jnp.arange(d.shape[1])[None] for d in docs]
                          + [jnp.zeros((1, 9), jnp.int32)], axis=1)
    packed, _ = apply(MICRO, params, row, seg, pos)
    start = 0
    for d in docs:
        alone, _ = apply(MICRO, params, d)
        n = d.shape[1]
        np.testing.assert_allclose(packed[:, start:start + n], alone, atol=2e-5)
        start += n
    assert np.all(np.isfinite(np.asarray(packed)))


def test_block_causal_attention_equals_whole_row():
    """Skipping the blocks above the diagonal changes nothing: packed documents
    that straddle block edges, padding, GQA; logits and gradients."""
    blocked = MICRO.replace(attention_block=8)
    whole = MICRO.replace(attention_block=0)
    params = decoder.init_params(MICRO, seed=6)
    tokens = _tokens(7, (2, 32))
    seg = jnp.array([[1] * 5 + [2] * 14 + [3] * 9 + [0] * 4,
                     [1] * 32])
    pos = jnp.array([list(range(5)) + list(range(14)) + list(range(9)) + [0] * 4,
                     list(range(32))])
    a, _ = apply(blocked, params, tokens, seg, pos)
    b, _ = apply(whole, params, tokens, seg, pos)
    np.testing.assert_allclose(a, b, atol=1e-5)

    def loss(cfg, p):
        return jnp.sum(jnp.square(decoder.apply(cfg, p, tokens, seg, pos)[0]) * (seg[..., None] > 0))

    ga = jax.jit(jax.grad(lambda p: loss(blocked, p)))(params)
    gb = jax.jit(jax.grad(lambda p: loss(whole, p)))(params)
    for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("changes", [
    {},
    {"num_kv_heads": 1},  # MQA
    {"num_kv_heads": 4},  # MHA
    {"activation": "gelu", "norm": "layernorm"},
    {"tie_embeddings": False, "parallel_block": True},
])
def test_param_count_formula_matches_module(changes):
    cfg = MICRO.replace(**changes)
    params = decoder.init_params(cfg)
    assert decoder.param_count(params) == info.count_params(cfg)[0]
    logits, _ = apply(cfg, params, _tokens(0, (2, 8)))
    assert logits.shape == (2, 8, 97) and logits.dtype == jnp.float32


def test_remat_gives_same_gradients():
    params = decoder.init_params(MICRO, seed=3)
    tokens = _tokens(1, (2, 16))

    def loss(cfg, p):
        return jnp.mean(apply(cfg, p, tokens)[0] ** 2)

    g0 = jax.jit(jax.grad(lambda p: loss(MICRO, p)))(params)
    g1 = jax.jit(jax.grad(lambda p: loss(MICRO.replace(remat="full"), p)))(params)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bf16_compute_keeps_f32_params_and_is_close():
    params = decoder.init_params(MICRO, seed=4)
    tokens = _tokens(2, (2, 16))
    f32, _ = apply(MICRO, params, tokens)
    bf16, _ = apply(MICRO.replace(dtype="bfloat16"), params, tokens)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    assert float(jnp.abs(f32 - bf16).max()) < 0.1


def test_params_carry_logical_axes():
    _, axes = decoder.graphdef_and_axes(MICRO)
    assert axes["embed"] == ("vocab", "embed")
    assert axes["layers"][0]["attn"]["q"] == ("embed", "heads", "kv")
    assert axes["layers"][1]["mlp"]["down"] == ("mlp", "embed")


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="num_kv_heads"):
        ModelConfig(num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="activation"):
        ModelConfig(activation="relu")


@pytest.mark.parametrize("name,target", [("tiny", None), ("small", None), ("470m", 470e6), ("2p8b", 2.8e9)])
def test_named_sizes(name, target):
    cm_config.parse([f"gin/models/{name}.gin"], finalize=False)
    total, _ = info.count_params(ModelConfig())
    if target:
        assert abs(total / target - 1) <= 0.03, total
    elif name == "tiny":
        assert 1e6 <= total <= 5e6, total
    else:
        assert 20e6 <= total <= 40e6, total
