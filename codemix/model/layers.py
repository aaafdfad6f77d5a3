"""Building blocks of the decoder.

Every parameter is an `nnx.Param` whose `axes` metadata names its logical axes
("vocab", "embed", "mlp", "heads", "kv_heads", "kv", "norm"). The training code
maps those names to mesh axes through one table (codemix/train/partitioning.py);
nothing here knows about meshes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from codemix.model import splash
from codemix.model.config import ModelConfig


def _param(rngs: nnx.Rngs, shape, axes, cfg: ModelConfig, std: float | None = None):
    init = jax.nn.initializers.normal(cfg.init_std if std is None else std)
    return nnx.Param(init(rngs.params(), shape, cfg.storage_dtype), axes=axes)


class Norm(nnx.Module):
    """RMSNorm (scale only) or LayerNorm (scale and bias), computed in float32."""

    def __init__(self, cfg: ModelConfig):
        self.kind = cfg.norm
        self.eps = cfg.norm_eps
        self.dtype = cfg.compute_dtype
        self.scale = nnx.Param(jnp.ones((cfg.d_model,), cfg.storage_dtype), axes=("norm",))
        if cfg.norm == "layernorm":
            self.bias = nnx.Param(jnp.zeros((cfg.d_model,), cfg.storage_dtype), axes=("norm",))

    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        if self.kind == "layernorm":
            x32 = x32 - jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(var + self.eps) * self.scale[...].astype(jnp.float32)
        if self.kind == "layernorm":
            y = y + self.bias[...].astype(jnp.float32)
        return y.astype(self.dtype)


def rope(x, positions, theta: float):
    """Rotary embedding, "rotate half" convention (the HF Llama layout).

    x: [batch, length, heads, head_dim]; positions: [batch, length] int, counted
    from 0 at the start of each packed document.
    """
    half = x.shape[-1] // 2
    freq = 1.0 / (theta ** (jnp.arange(half, dtype=jnp.float32) / half))
    angle = positions.astype(jnp.float32)[..., None] * freq  # [b, l, half]
    sin = jnp.sin(angle)[:, :, None, :]
    cos = jnp.cos(angle)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def attention_mask(q_segments, k_segments, q_slots, k_slots, q_branches=None, k_branches=None):
    """Boolean [batch, 1, q, k] mask: same document, not padding, causal.

    Slots are indices in the row (or in the KV cache), so causality follows the
    order of tokens in the row; segment ids keep packed documents apart, and
    segment id 0 marks padding.

    Branch ids (optional, evaluation only) let several continuations share one
    copy of their context inside a segment: branch 0 is the shared prefix, and
    a token of branch j > 0 sees the prefix and its own branch, never another
    branch. A row without branches is all branch 0.
    """
    same_doc = q_segments[:, :, None] == k_segments[:, None, :]
    not_pad = (q_segments[:, :, None] != 0) & (k_segments[:, None, :] != 0)
    causal = k_slots[:, None, :] <= q_slots[:, :, None]
    mask = same_doc & not_pad & causal
    if q_branches is not None:
        kb = k_branches[:, None, :]
        mask = mask & ((kb == 0) | (kb == q_branches[:, :, None]))
    return mask[:, None, :, :]


def _attend(q, k, v, mask):
    """Softmax attention with grouped KV heads; scores and softmax in float32.

    q: [b, lq, kv_heads * groups, h]; k, v: [b, lk, kv_heads, h];
    mask: [b, lq, lk] bool. Query heads are grouped as in Llama: query head i
    reads KV head i // groups. Returns [b, lq, heads, h] in q's dtype. Rows whose
    mask is all False (padding) come out as zeros.
    """
    b, lq, n, h = q.shape
    kv = k.shape[2]
    g = n // kv
    qg = q.reshape(b, lq, kv, g, h)
    s = jnp.einsum("bqkgh,bskh->bkgqs", qg, k, preferred_element_type=jnp.float32)
    s = s * (h ** -0.5)
    m = mask[:, None, None, :, :]
    s = jnp.where(m, s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=-1)
    p = jnp.where(m, p, 0.0).astype(v.dtype)
    o = jnp.einsum("bkgqs,bskh->bqkgh", p, v)
    return o.reshape(b, lq, n, h)


def _attend_one(q, k, v, mask):
    """`_attend` for a single query per row (a decode step against a KV cache).

    Same result, computed as broadcast multiply-and-sum in float32 over the
    cache's own [b, s, kv_heads, h] layout: a dot_general here would first
    transpose the whole cache into batch-major order every layer and step,
    which made cached decoding on CPU about 2.5x slower.
    """
    b, _, n, h = q.shape
    kv = k.shape[2]
    g = n // kv
    qg = q.reshape(b, 1, kv, g, h).astype(jnp.float32)
    s = jnp.sum(qg * k.astype(jnp.float32)[:, :, :, None, :], axis=-1) * (h ** -0.5)  # [b, s, kv, g]
    m = mask[:, 0, :, None, None]
    s = jnp.where(m, s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s, axis=1)
    p = jnp.where(m, p, 0.0)
    o = jnp.sum(p[..., None] * v.astype(jnp.float32)[:, :, :, None, :], axis=1)  # [b, kv, g, h]
    return o.reshape(b, 1, n, h).astype(q.dtype)


def block_causal_attention(q, k, v, segment_ids, block: int, branch_ids=None):
    """Training-time attention over a whole row, skipping the blocks above the
    causal diagonal.

    The row is cut into query blocks of `block` tokens; block i only scores
    keys 0 .. (i+1)*block - 1, so about half of the score matrix is never
    computed. Within that, the segment-id mask keeps packed documents apart
    exactly as `attention_mask` does. Falls back to one block when the length
    is not a multiple of `block` (or `block` is 0). `branch_ids`: see
    `attention_mask`.
    """
    b, length = segment_ids.shape
    slots = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length))
    br = branch_ids
    if block <= 0 or length % block or length <= block:
        return _attend(q, k, v, attention_mask(segment_ids, segment_ids, slots, slots, br, br)[:, 0])
    outs = []
    for start in range(0, length, block):
        end = start + block
        mask = attention_mask(segment_ids[:, start:end], segment_ids[:, :end],
                              slots[:, start:end], slots[:, :end],
                              None if br is None else br[:, start:end],
                              None if br is None else br[:, :end])[:, 0]
        outs.append(_attend(q[:, start:end], k[:, :end], v[:, :end], mask))
    return jnp.concatenate(outs, axis=1)


def _dense(x, w, out_shape):
    """x [..., *in] @ w [*in, *out] as one 2-D matmul (XLA:CPU runs 2-D dots
    markedly faster than the same contraction with leading batch dims)."""
    lead = x.shape[: x.ndim - (w.ndim - len(out_shape))]
    k = 1
    for d in w.shape[: w.ndim - len(out_shape)]:
        k *= d
    y = x.reshape(-1, k) @ w.reshape(k, -1)
    return y.reshape(lead + tuple(out_shape))


class Attention(nnx.Module):
    """Causal, packing-aware multi-head attention with grouped KV heads and RoPE."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        d, n, k, h = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q = _param(rngs, (d, n, h), ("embed", "heads", "kv"), cfg)
        self.k = _param(rngs, (d, k, h), ("embed", "kv_heads", "kv"), cfg)
        self.v = _param(rngs, (d, k, h), ("embed", "kv_heads", "kv"), cfg)
        out_std = cfg.init_std / (2 * cfg.num_layers) ** 0.5
        self.o = _param(rngs, (n, h, d), ("heads", "kv", "embed"), cfg, std=out_std)

    def __call__(self, x, segment_ids, positions, cache=None, branch_ids=None, constrain=None):
        """Returns (output, new_cache). `cache` is None for training.

        A cache is a dict with "k", "v" ([batch, max_len, kv_heads, head_dim]),
        "segment_ids" ([batch, max_len]) and "index" (scalar int32: the slot the
        first token of `x` goes to). Decoding with it gives the same result as
        running the whole row at once. `branch_ids` (no cache): see
        `attention_mask`. Without a cache, `cfg.attention` picks the kernel
        (splash.choose); `constrain` (decoder.Constrain) gives splash its mesh.
        """
        cfg = self.cfg
        dt = cfg.compute_dtype
        n, kvh, h = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        # Named for the save_* remat policies (config.REMAT_NAMES).
        q = checkpoint_name(_dense(x, self.q[...].astype(dt), (n, h)), "query_proj")
        k = checkpoint_name(_dense(x, self.k[...].astype(dt), (kvh, h)), "key_proj")
        v = checkpoint_name(_dense(x, self.v[...].astype(dt), (kvh, h)), "value_proj")
        q = rope(q, positions, cfg.rope_theta)
        k = rope(k, positions, cfg.rope_theta)
        if cache is None:
            kind = splash.choose(cfg.attention, splash.platform_of(constrain), branch_ids is not None)
            if kind == "splash":
                out = splash.splash_attention(q, k, v, segment_ids, constrain)
            else:
                out = block_causal_attention(q, k, v, segment_ids, cfg.attention_block, branch_ids)
            new_cache = None
        else:
            if branch_ids is not None:
                raise ValueError("branch ids are not supported with a KV cache.")
            length, batch = x.shape[1], x.shape[0]
            index = cache["index"]
            k_all = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), index, 1)
            v_all = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), index, 1)
            k_seg = jax.lax.dynamic_update_slice_in_dim(
                cache["segment_ids"], segment_ids.astype(jnp.int32), index, 1
            )
            max_len = k_all.shape[1]
            k_slots = jnp.broadcast_to(jnp.arange(max_len, dtype=jnp.int32), (batch, max_len))
            q_slots = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length)) + index
            new_cache = {"k": k_all, "v": v_all, "segment_ids": k_seg, "index": index + length}
            mask = attention_mask(segment_ids, k_seg, q_slots, k_slots)[:, 0]
            attend = _attend_one if length == 1 else _attend
            out = attend(q, k_all.astype(dt), v_all.astype(dt), mask)
        out = checkpoint_name(out.astype(dt), "attention_out")
        y = checkpoint_name(_dense(out, self.o[...].astype(dt), (cfg.d_model,)), "out_proj")
        return y, new_cache


class MLP(nnx.Module):
    """SwiGLU (gate * up, then down) or GELU feed-forward block."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        d, f = cfg.d_model, cfg.d_ff
        out_std = cfg.init_std / (2 * cfg.num_layers) ** 0.5
        if cfg.activation == "swiglu":
            self.gate = _param(rngs, (d, f), ("embed", "mlp"), cfg)
        self.up = _param(rngs, (d, f), ("embed", "mlp"), cfg)
        self.down = _param(rngs, (f, d), ("mlp", "embed"), cfg, std=out_std)

    def __call__(self, x):
        dt = self.cfg.compute_dtype
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # 2-D dots: see _dense
        h = x @ self.up[...].astype(dt)
        if self.cfg.activation == "swiglu":
            h = jax.nn.silu(x @ self.gate[...].astype(dt)) * h
        else:
            h = jax.nn.gelu(h)
        return checkpoint_name(h @ self.down[...].astype(dt), "mlp_out").reshape(shape)


class Block(nnx.Module):
    """One decoder block: pre-norm attention and MLP, sequential or parallel."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.parallel = cfg.parallel_block
        self.attn_norm = Norm(cfg)
        self.attn = Attention(cfg, rngs)
        if not cfg.parallel_block:
            self.mlp_norm = Norm(cfg)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, segment_ids, positions, cache=None, branch_ids=None, constrain=None):
        h = self.attn_norm(x)
        attn_out, new_cache = self.attn(h, segment_ids, positions, cache, branch_ids, constrain)
        if self.parallel:
            return x + attn_out + self.mlp(h), new_cache
        x = x + attn_out
        return x + self.mlp(self.mlp_norm(x)), new_cache
