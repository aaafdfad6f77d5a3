"""Fused attention: Pallas splash attention with segment ids, and the choice
of kernel per platform (`ModelConfig.attention`).

Splash attention (jax.experimental.pallas.ops.tpu.splash_attention) computes
causal attention block by block in VMEM, never materialising the [L, L]
scores, and skips the blocks its mask rules out. Its `SegmentIds` keep packed
documents apart: a query sees a key only when their segment ids are equal, so
it computes exactly `layers.attention_mask` except at padding (segment 0),
where padding tokens see each other instead of nothing; those positions carry
no loss and, attention being the only place tokens mix, change no other
position. On TPU it runs as a Mosaic kernel; on CPU with `interpret=True`
(the tests).

A Pallas kernel can't be split by XLA's sharding propagation, so under a mesh
it runs inside `jax.shard_map`, each device on its own rows and heads; the
`constrain` object the train step passes (see decoder.Constrain) carries the
mesh and the logical-axis table for that.
"""
from __future__ import annotations

import functools
import logging

import jax
import jax.numpy as jnp

log = logging.getLogger(__name__)

SPLASH_PLATFORMS = ("tpu",)


def choose(attention: str, platform: str, branch_ids: bool = False) -> str:
    """The kernel that runs: "xla" or "splash", for a config's `attention`.

    "auto" is splash on TPU and the blocked XLA path elsewhere. "cudnn" falls
    back to XLA with a logged reason: jax.nn.dot_product_attention's cuDNN
    kernel takes no segment ids, and packed documents must never see each
    other. Branch ids (packed multiple-choice scoring) need the XLA mask.
    """
    if branch_ids:
        return "xla"
    if attention == "auto":
        return "splash" if platform in SPLASH_PLATFORMS else "xla"
    if attention == "cudnn":
        log.warning("ModelConfig.attention='cudnn': jax's cuDNN attention has no segment ids, so packed "
                    "documents would attend to each other; using the XLA attention instead.")
        return "xla"
    if attention == "splash" and platform not in SPLASH_PLATFORMS + ("cpu",):
        raise ValueError(
            f"ModelConfig.attention='splash' needs a TPU (or the CPU, interpreted); this is {platform}. "
            f"Use one of 'auto', 'xla' (set it with --gin_param 'ModelConfig.attention=\"xla\"')."
        )
    return attention


@functools.lru_cache(maxsize=32)
def _kernel(heads: int, length: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk,
    )
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_mask as sm,
    )

    mask = sm.MultiHeadMask([sm.CausalMask((length, length)) for _ in range(heads)])
    b = min(512, length)
    sizes = sk.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b, block_kv_dkv=b,
                          block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
    return sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes, interpret=interpret)


def _local_splash(q, k, v, segment_ids, interpret: bool):
    """q [b, l, n, h], k/v [b, l, kv, h], segment_ids [b, l] -> [b, l, n, h]."""
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as sk,
    )

    n, kvh, h = q.shape[2], k.shape[2], q.shape[3]
    if kvh != n:  # grouped KV heads: query head i reads KV head i // groups
        k = jnp.repeat(k, n // kvh, axis=2)
        v = jnp.repeat(v, n // kvh, axis=2)
    kernel = _kernel(n, q.shape[1], interpret)
    qt = (q * jnp.asarray(h ** -0.5, q.dtype)).transpose(0, 2, 1, 3)
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    seg = segment_ids.astype(jnp.int32)

    def one(qr, kr, vr, sr):
        return kernel(qr, kr, vr, segment_ids=sk.SegmentIds(q=sr, kv=sr))

    return jax.vmap(one)(qt, kt, vt, seg).transpose(0, 2, 1, 3)


def splash_attention(q, k, v, segment_ids, constrain=None, interpret: bool | None = None):
    """Causal attention within segments (see the module docstring). Under a
    mesh (`constrain` with `.mesh` and `.spec`), one kernel per device shard."""
    if interpret is None:
        interpret = jax.default_backend() != "tpu" and _platform(constrain) != "tpu"
    fn = functools.partial(_local_splash, interpret=interpret)
    mesh = getattr(constrain, "mesh", None)
    if mesh is None or mesh.size == 1:
        return fn(q, k, v, segment_ids)
    qs = constrain.spec(("batch", "length", "heads", "kv"), q.shape)
    ks = constrain.spec(("batch", "length", "kv_heads", "kv"), k.shape)
    if k.shape[2] != q.shape[2] and ks[2] != qs[2]:
        ks = jax.sharding.PartitionSpec(ks[0], ks[1], None, ks[3])  # KV heads whole, repeated per shard
        qs = jax.sharding.PartitionSpec(qs[0], qs[1], None, qs[3])
    ss = constrain.spec(("batch", "length"), segment_ids.shape)
    return jax.shard_map(fn, mesh=mesh, in_specs=(qs, ks, ks, ss), out_specs=qs, check_vma=False)(
        q, k, v, segment_ids)


def _platform(constrain) -> str | None:
    mesh = getattr(constrain, "mesh", None)
    return None if mesh is None else mesh.devices.flat[0].platform


def platform_of(constrain) -> str:
    """The platform the step is compiled for: the mesh's, else JAX's default."""
    return _platform(constrain) or jax.default_backend()
