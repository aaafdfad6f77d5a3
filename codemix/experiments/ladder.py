"""Model ladders: the same mixtures at several model sizes and token budgets.

Sizes come from one knob, as OLMo's ladder (Bhagia et al. 2024) derives every
shape from one number. Ladder size w (an integer >= 1) is the decoder

    d_model = 64 w,  num_layers = w + 1,  num_heads = num_kv_heads = w,  head_dim = 64,
    d_ff = 64 * ceil(8 w / 3)      (SwiGLU's 8/3 d_model, rounded up to a multiple of 64)

so width and depth grow together and heads stay 64 wide. The vocabulary is
the experiment model gin's (tiny.gin: 8192); its size enters the parameter
count. A rung's parameter count N is the model's total (embeddings included,
the Chinchilla convention); its budgets are tokens per parameter times N,
rounded to whole training steps.

Every budget is a separate run from scratch: codemix does not branch shorter
budgets from a longer run's intermediate checkpoint (a warmup-stable-decay
branch), so a ladder costs the sum of its budgets.

    Experiment.variants = @ladder_matrix()
    ladder_matrix.mixtures = ["text_only", "code_p25", "code_p50", "code_p75", "code_p100"]
    ladder_matrix.sizes = [1, 2, 3]
    ladder_matrix.tokens_per_param = [0.04, 0.08]
    ladder_matrix.top_seeds = [0, 1]

A ladder variant is named <mixture>@w<size>x<tokens per param>, e.g.
code_p25@w2x0.04; its run is init-<mixture>-<tokens>-w<size>.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import gin

from codemix.experiments.matrix import Stage, Variant, check_seeds

HEAD_DIM = 64


def size_shape(size: int) -> dict[str, int]:
    """The decoder shape of ladder size `size` (module docstring)."""
    if int(size) != size or size < 1:
        raise ValueError(f"ladder size {size!r} must be an integer >= 1 (the width knob: d_model = 64 x size).")
    size = int(size)
    return {"d_model": HEAD_DIM * size, "num_layers": size + 1, "num_heads": size, "num_kv_heads": size,
            "head_dim": HEAD_DIM, "d_ff": 64 * math.ceil(8 * size / 3)}


def size_bindings(size: int) -> list[str]:
    """Gin bindings that set ModelConfig to ladder size `size` (after the experiment's model gin)."""
    return [f"ModelConfig.{k} = {v}" for k, v in size_shape(size).items()]


def size_params(size: int, vocab_size: int, tie_embeddings: bool = True) -> int:
    """Total parameters of ladder size `size` (SwiGLU, RMSNorm: codemix/model/info.py)."""
    from codemix.model.config import ModelConfig
    from codemix.model.info import count_params

    return count_params(ModelConfig(vocab_size=vocab_size, tie_embeddings=tie_embeddings, **size_shape(size)))[0]


@gin.configurable
def ladder_matrix(mixtures: Sequence[str] = gin.REQUIRED, sizes: Sequence[int] = gin.REQUIRED,
                  tokens_per_param: Sequence[float] = gin.REQUIRED, top_seeds: Sequence[int] = (0, 1),
                  seeds: Sequence[int] = (0,), vocab_size: int = 8192, tie_embeddings: bool = True,
                  tokens_per_step: int = 2048) -> list[Variant]:
    """Every mixture at every size and budget, as from-scratch init stages.

    Args:
      mixtures: mixture names (gin/mixtures/<name>.gin), e.g. the code-share sweep.
      sizes: ladder sizes (module docstring), at least two; the largest is the top rung.
      tokens_per_param: budgets per size in tokens per parameter, at least two (a law in
        D needs two budgets per size).
      top_seeds: seeds of the top rung's runs (>= 2 give decision accuracy its seed noise).
      seeds: seeds of every other rung.
      vocab_size, tie_embeddings: the model gin's (they enter the parameter count; tiny.gin's by default).
      tokens_per_step: batch_size x sequence_length; budgets are rounded to whole steps.
    """
    sizes = sorted(dict.fromkeys(int(s) for s in sizes))
    tpps = sorted(dict.fromkeys(float(t) for t in tokens_per_param))
    missing = []
    if len(sizes) < 2:
        missing.append(f"a second model size (ladder_matrix.sizes = {list(sizes)})")
    if len(tpps) < 2:
        missing.append(f"a second token budget per size (ladder_matrix.tokens_per_param = {list(tpps)})")
    if missing:
        raise ValueError("a ladder needs two sizes and two budgets for its law in N and D; add "
                         + " and ".join(missing) + ", e.g. sizes = [1, 2, 3], tokens_per_param = [0.04, 0.08].")
    if not mixtures:
        raise ValueError("ladder_matrix.mixtures is empty; list the mixtures to run at every rung.")
    if any(t <= 0 for t in tpps):
        raise ValueError(f"ladder_matrix.tokens_per_param {tpps} must be positive.")
    top_seeds, seeds = check_seeds(top_seeds), check_seeds(seeds)
    out = []
    for size in sizes:
        n = size_params(size, vocab_size, tie_embeddings)
        budgets = {t: max(1, round(t * n / tokens_per_step)) * tokens_per_step for t in tpps}
        if len(set(budgets.values())) < len(budgets):
            raise ValueError(f"ladder size {size} ({n} parameters): tokens_per_param {tpps} round to the same "
                             f"number of {tokens_per_step}-token steps ({sorted(budgets.values())}); space the "
                             f"budgets further apart or use smaller steps.")
        for t, tokens in budgets.items():
            for m in mixtures:
                out.append(Variant(f"{m}@w{size}x{t:g}", (Stage("init", m, float(tokens), size),),
                                   top_seeds if size == sizes[-1] else seeds))
    return out
