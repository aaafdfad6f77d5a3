"""Parameter counts and FLOPs per token, computed from the config alone."""
from __future__ import annotations

import dataclasses

from codemix.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    total_params: int
    embedding_params: int
    non_embedding_params: int
    flops_per_token: float  # training (forward + backward), at `seq_len`
    seq_len: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def count_params(cfg: ModelConfig) -> tuple[int, int]:
    """(total, embedding) parameter counts, by formula (checked against the
    real module in tests)."""
    d, n, k, h, f, layers = (
        cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.d_ff, cfg.num_layers
    )
    norm = d * (2 if cfg.norm == "layernorm" else 1)
    attn = d * n * h + 2 * d * k * h + n * h * d
    mlp = (3 if cfg.activation == "swiglu" else 2) * d * f
    block = attn + mlp + norm * (1 if cfg.parallel_block else 2)
    embedding = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
    return layers * block + norm + embedding, embedding


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x (matmul params incl. the output projection)
    + 12 x layers x heads x head_dim x seq_len for attention scores and values
    (the PaLM appendix-B convention: the causal half is not discounted, so MFU
    figures are comparable with published ones)."""
    d, n, k, h, f, layers = (
        cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.d_ff, cfg.num_layers
    )
    attn = d * n * h + 2 * d * k * h + n * h * d
    mlp = (3 if cfg.activation == "swiglu" else 2) * d * f
    matmul_params = layers * (attn + mlp) + d * cfg.vocab_size
    return 6.0 * matmul_params + 12.0 * layers * n * h * seq_len


def model_info(cfg: ModelConfig, seq_len: int) -> ModelInfo:
    total, embedding = count_params(cfg)
    return ModelInfo(
        total_params=total,
        embedding_params=embedding,
        non_embedding_params=total - embedding,
        flops_per_token=flops_per_token(cfg, seq_len),
        seq_len=seq_len,
    )
