"""Splash attention (codemix/model/splash.py) equals the XLA attention on packed rows.

The kernel runs interpreted on the CPU. It must give `block_causal_attention`'s
output, and the same gradients, at every position that carries loss (padding,
segment 0, is where they may differ; see the module docstring).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codemix.model import splash
from codemix.model.layers import block_causal_attention


def _packing(rng, batch, length):
    segments = np.zeros((batch, length), np.int32)
    for r in range(batch):
        docs = rng.randint(2, 5)
        cuts = sorted(rng.choice(np.arange(1, length - 8), docs - 1, replace=False))
        end = length - rng.randint(0, 8)  # then padding
        for s, (a, b) in enumerate(zip([0, *cuts], [*cuts, end])):
            segments[r, a:b] = s + 1
    return jnp.asarray(segments)


@pytest.mark.slow  # the interpreted kernel, forward and backward (~20 s each)
@pytest.mark.parametrize("head_dim, kv_heads", [(64, 2), (128, 2), (64, 1)])
def test_splash_equals_blocked_attention_and_its_gradient_on_packed_rows(head_dim, kv_heads):
    rng = np.random.RandomState(head_dim + kv_heads)
    b, length, n = 2, 256, 2
    q = jnp.asarray(rng.randn(b, length, n, head_dim), jnp.float32)
    k = jnp.asarray(rng.randn(b, length, kv_heads, head_dim), jnp.float32)
    v = jnp.asarray(rng.randn(b, length, kv_heads, head_dim), jnp.float32)
    seg = _packing(rng, b, length)
    carries_loss = (seg > 0)[:, :, None, None].astype(jnp.float32)
    w = jnp.asarray(rng.randn(b, length, n, head_dim), jnp.float32) * carries_loss

    def loss(fn, q, k, v):
        return jnp.sum(fn(q, k, v) * w)

    def xla(q, k, v):
        return block_causal_attention(q, k, v, seg, 128)

    def fused(q, k, v):
        return splash.splash_attention(q, k, v, seg, interpret=True)

    want, got = xla(q, k, v), fused(q, k, v)
    np.testing.assert_allclose(np.asarray(got * carries_loss), np.asarray(want * carries_loss),
                               atol=2e-5, rtol=1e-5)
    gw = jax.grad(lambda *a: loss(xla, *a), argnums=(0, 1, 2))(q, k, v)
    gg = jax.grad(lambda *a: loss(fused, *a), argnums=(0, 1, 2))(q, k, v)
    for a, c in zip(gw, gg):
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("attention, platform, branch, want", [
    ("auto", "tpu", False, "splash"), ("auto", "cpu", False, "xla"), ("auto", "gpu", False, "xla"),
    ("auto", "tpu", True, "xla"), ("splash", "cpu", False, "splash"), ("xla", "tpu", False, "xla"),
    ("cudnn", "gpu", False, "xla"),
])
def test_auto_picks_the_kernel_per_platform(attention, platform, branch, want):
    assert splash.choose(attention, platform, branch) == want


def test_splash_on_gpu_names_the_supported_choices():
    with pytest.raises(ValueError, match="'auto', 'xla'"):
        splash.choose("splash", "gpu")
