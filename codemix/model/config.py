"""Decoder configuration: one frozen dataclass, set from `gin/models/*.gin`."""
from __future__ import annotations

import dataclasses
from typing import Literal

import jax.numpy as jnp

import gin

ACTIVATIONS = ("swiglu", "gelu")
NORMS = ("rmsnorm", "layernorm")
# The first four by kind of tensor (jax.checkpoint_policies); the save_* ones by name:
# they save the tensors the layers tag with jax.ad_checkpoint.checkpoint_name
# (REMAT_NAMES, MaxText's convention) and recompute the rest.
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "save_qkv", "save_qkv_attn", "save_out_proj")
REMAT_NAMES = {
    "save_qkv": ("query_proj", "key_proj", "value_proj"),
    "save_qkv_attn": ("query_proj", "key_proj", "value_proj", "attention_out"),
    "save_out_proj": ("query_proj", "key_proj", "value_proj", "attention_out", "out_proj", "mlp_out"),
}
ATTENTION = ("auto", "xla", "splash", "cudnn")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@gin.configurable
@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of the codemix decoder.

    Attributes:
      vocab_size: number of token ids (rows of the embedding table).
      d_model: width of the residual stream.
      num_layers: number of decoder blocks.
      num_heads: query heads.
      num_kv_heads: key/value heads; equal to num_heads is MHA, 1 is MQA,
        anything dividing num_heads is GQA.
      head_dim: width of one attention head.
      d_ff: hidden width of the feed-forward block (per branch for SwiGLU).
      activation: "swiglu" (default, as in Llama) or "gelu".
      norm: "rmsnorm" (default) or "layernorm".
      norm_eps: epsilon inside the norm; 1e-5 matches Llama checkpoints.
      rope_theta: RoPE base frequency.
      tie_embeddings: reuse the input embedding as the output projection.
      parallel_block: attention and MLP read the same normed input (PaLM style)
        instead of running one after the other.
      dtype: compute dtype ("float32" or "bfloat16"); params are cast to it.
      param_dtype: storage dtype of the parameters (keep "float32" for training).
      remat: activation recomputation per block: "none", "full" (save nothing),
        "dots" (save matmul outputs), "dots_no_batch" (save the projections, not
        the batched attention dots), or a named policy: "save_qkv" (the q, k, v
        projections), "save_qkv_attn" (and the attention output), "save_out_proj"
        (and the attention and MLP output projections); see REMAT_NAMES.
      scan_layers: run the blocks with one `jax.lax.scan` over stacked
        parameters (params["blocks"], leading axis num_layers) instead of a
        Python loop over params["layers"][i]: same numbers, a program one block
        long (faster compiles). Default False: the per-layer layout of
        existing checkpoints; codemix/model/layer_stack.py converts.
      z_loss: weight of the log(Z)^2 auxiliary loss (0 disables it; PaLM used 1e-4).
      attention: training-time attention kernel: "auto" (splash on TPU, else
        "xla"), "xla" (the blocked einsum path below), "splash" (Pallas splash
        attention with segment ids; TPU, or interpreted on CPU for tests) or
        "cudnn" (refused: jax's cuDNN attention has no segment ids, so packed
        documents would see each other). Decoding with a KV cache and
        branch ids always use "xla".
      attention_block: query block size of training-time attention; blocks
        above the causal diagonal are skipped. 0 scores the whole row at once.
      init_std: stddev of the normal initialiser for embeddings and kernels.
    """

    vocab_size: int = 259
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    head_dim: int = 32
    d_ff: int = 512
    activation: Literal["swiglu", "gelu"] = "swiglu"
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    parallel_block: bool = False
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: str = "none"
    scan_layers: bool = False
    attention: str = "auto"
    z_loss: float = 0.0
    attention_block: int = 128
    init_std: float = 0.02

    def __post_init__(self):
        def bad(field, value, allowed):
            raise ValueError(
                f"ModelConfig.{field}={value!r} is not supported; use one of {allowed} "
                f"(set it with --gin_param 'ModelConfig.{field}=...')."
            )

        if self.activation not in ACTIVATIONS:
            bad("activation", self.activation, ACTIVATIONS)
        if self.norm not in NORMS:
            bad("norm", self.norm, NORMS)
        if self.remat not in REMAT_POLICIES:
            bad("remat", self.remat, REMAT_POLICIES)
        if self.attention not in ATTENTION:
            bad("attention", self.attention, ATTENTION)
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in DTYPES:
                bad(field, getattr(self, field), tuple(DTYPES))
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"ModelConfig.num_heads={self.num_heads} must be a multiple of "
                f"num_kv_heads={self.num_kv_heads} (GQA groups query heads over KV heads)."
            )
        for field in ("vocab_size", "d_model", "num_layers", "num_heads", "head_dim", "d_ff"):
            if getattr(self, field) <= 0:
                raise ValueError(f"ModelConfig.{field} must be positive, got {getattr(self, field)}.")

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def storage_dtype(self):
        return DTYPES[self.param_dtype]

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
