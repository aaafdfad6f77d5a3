"""PyTorch reference train step for the codemix decoder, printed as JSON.

The same architecture as codemix's `small` (gin/models/small.gin): vocabulary
16384, width 512, 8 blocks of pre-norm RMSNorm attention (8 heads of 64, RoPE
"rotate half", theta 1e4, causal) and SwiGLU (1408), final RMSNorm, output
projection tied to the embedding; initialised as codemix does (normal 0.02,
output projections 0.02 / sqrt(2 x layers)). One step is the codemix step: the
token-summed cross-entropy of every microbatch, gradients accumulated and
divided by the batch's target tokens, global-norm clipping at 1.0, then AdamW
(b1 0.9, b2 0.95, eps 1e-8, decay 0.1 on matrices only), all in float32.
FLOPs per token use codemix.model.info's formula (6 x matmul params + 12 x
layers x heads x head_dim x seq_len); tests/benchmarks check that the two agree.

torch is an optional benchmark dependency that CI never installs. Put it in a
venv of its own so the project's venv stays what CI has:

    python3 -m venv /work/torchvenv
    /work/torchvenv/bin/pip install -r benchmarks/requirements-torch.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu

(the CPU index gives a ~200 MB CPU-only wheel instead of the CUDA build; a
local `torch-*+cpu` wheel works as well). Then

    /work/torchvenv/bin/python benchmarks/torch_reference.py [--batch 16]
        [--accum 4] [--steps 5] [--compile] [--peak_flops F] [--threads N]

or, against codemix in the same window, `python benchmarks/train_throughput.py
--vs_torch --torch_python /work/torchvenv/bin/python`. Batches are random
tokens in full rows (one document each, so the causal mask is the whole mask),
as in benchmarks/train_throughput.py.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

# The `small` shape (gin/models/small.gin) and codemix's defaults.
SMALL = {"vocab_size": 16384, "d_model": 512, "num_layers": 8, "num_heads": 8,
         "head_dim": 64, "d_ff": 1408, "norm_eps": 1e-5, "rope_theta": 10000.0, "init_std": 0.02}


def param_count(c: dict) -> int:
    """Total parameters of the tied SwiGLU/RMSNorm decoder with shape `c`."""
    d, n, h, f, layers = c["d_model"], c["num_heads"], c["head_dim"], c["d_ff"], c["num_layers"]
    block = 4 * d * n * h + 3 * d * f + 2 * d
    return layers * block + d + c["vocab_size"] * d


def flops_per_token(c: dict, seq_len: int) -> float:
    """Training FLOPs per token, the codemix.model.info convention."""
    d, n, h, f, layers = c["d_model"], c["num_heads"], c["head_dim"], c["d_ff"], c["num_layers"]
    matmul_params = layers * (4 * d * n * h + 3 * d * f) + d * c["vocab_size"]
    return 6.0 * matmul_params + 12.0 * layers * n * h * seq_len


def build(c: dict, seed: int = 0):
    """The decoder as a torch.nn.Module (torch is imported here, not at import)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class RMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + c["norm_eps"]) * self.scale

    def rope(x, cos, sin):  # x [b, heads, l, h]; "rotate half"
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d, n, h, f = c["d_model"], c["num_heads"], c["head_dim"], c["d_ff"]
            self.attn_norm, self.mlp_norm = RMSNorm(d), RMSNorm(d)
            self.qkv = nn.Linear(d, 3 * n * h, bias=False)
            self.o = nn.Linear(n * h, d, bias=False)
            self.gate_up = nn.Linear(d, 2 * f, bias=False)
            self.down = nn.Linear(f, d, bias=False)

        def forward(self, x, cos, sin):
            b, length, _ = x.shape
            n, h = c["num_heads"], c["head_dim"]
            q, k, v = self.qkv(self.attn_norm(x)).view(b, length, 3, n, h).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin), v, is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(b, length, n * h))
            gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
            return x + self.down(F.silu(gate) * up)

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Parameter(torch.empty(c["vocab_size"], c["d_model"]))
            self.blocks = nn.ModuleList(Block() for _ in range(c["num_layers"]))
            self.final_norm = RMSNorm(c["d_model"])

        def forward(self, tokens, targets):
            length = tokens.shape[1]
            half = c["head_dim"] // 2
            freq = 1.0 / c["rope_theta"] ** (torch.arange(half, dtype=torch.float32) / half)
            angle = torch.arange(length, dtype=torch.float32)[:, None] * freq
            cos, sin = angle.cos(), angle.sin()
            x = self.embed[tokens]
            for block in self.blocks:
                x = block(x, cos, sin)
            logits = self.final_norm(x) @ self.embed.t()
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), reduction="sum")

    torch.manual_seed(seed)
    model = Decoder()
    std, out_std = c["init_std"], c["init_std"] / math.sqrt(2 * c["num_layers"])
    with torch.no_grad():
        model.embed.normal_(0.0, std)
        for block in model.blocks:
            for w, s in ((block.qkv, std), (block.o, out_std), (block.gate_up, std), (block.down, out_std)):
                w.weight.normal_(0.0, s)
    return model


def make_step(model, accum: int, lr: float = 1e-4, compile_model: bool = False):
    """step(tokens, targets) -> loss per token; codemix's update (see module doc)."""
    import torch

    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.95), eps=1e-8)
    loss_fn = torch.compile(model) if compile_model else model

    def step(tokens, targets):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for tok, tgt in zip(tokens.chunk(accum), targets.chunk(accum)):
            loss = loss_fn(tok, tgt)
            loss.backward()
            total += float(loss.detach())
        n_tokens = targets.numel()
        for p in model.parameters():
            p.grad.div_(n_tokens)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return total / n_tokens

    return step


def matmul_peak(repeats: int = 5) -> float:
    """Best f32 n x n matmul FLOP/s in torch, best of n = 1024, 2048, 4096."""
    import torch

    best = 0.0
    for n in (1024, 2048, 4096):
        a, b = torch.ones(n, n), torch.ones(n, n)
        a @ b
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def bench(batch: int, accum: int, seq_len: int, steps: int, compile_model: bool = False,
          peak_flops: float | None = None, threads: int | None = None) -> dict:
    import numpy as np
    import torch

    if batch % accum:
        raise ValueError(f"--batch {batch} is not a multiple of --accum {accum}; pick a divisor.")
    if threads:
        torch.set_num_threads(threads)
    model = build(SMALL)
    step = make_step(model, accum, compile_model=compile_model)
    rng = np.random.default_rng(0)
    tokens = torch.from_numpy(rng.integers(1, SMALL["vocab_size"], (batch, seq_len)).astype(np.int64))
    targets = torch.roll(tokens, -1, dims=1)
    t0 = time.perf_counter()
    step(tokens, targets)  # first step: allocations (and compilation with --compile)
    first_s = time.perf_counter() - t0
    step(tokens, targets)  # one warm step, as in train_throughput.py
    times, loss = [], float("nan")
    for _ in range(steps):
        t = time.perf_counter()
        loss = step(tokens, targets)
        times.append(time.perf_counter() - t)
    step_time = float(np.median(times))
    tokens_per_sec = batch * seq_len / step_time
    fpt = flops_per_token(SMALL, seq_len)
    peak_source = "given"
    if not peak_flops:
        peak_flops, peak_source = matmul_peak(), "measured:torch-f32-matmul-best-of-1024/2048/4096"
    return {
        "framework": f"torch {torch.__version__}" + (" compile" if compile_model else " eager"),
        "model": "small", "params": param_count(SMALL), "dtype": "float32",
        "batch": batch, "grad_accum_steps": accum, "seq_len": seq_len,
        "threads": torch.get_num_threads(), "first_step_s": round(first_s, 2),
        "step_time_s": step_time, "step_times_s": times, "tokens_per_sec": tokens_per_sec,
        "flops_per_token": fpt, "achieved_flops_per_sec": tokens_per_sec * fpt,
        "peak_flops_per_sec": peak_flops, "peak_source": peak_source,
        "mfu": tokens_per_sec * fpt / peak_flops, "final_loss": loss,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--accum", type=int, default=4, help="microbatches per step (batch / accum rows each)")
    p.add_argument("--seq_len", type=int, default=512)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (needs a C++ compiler)")
    p.add_argument("--peak_flops", type=float, default=None,
                   help="peak FLOP/s to compute MFU against (default: measure a torch f32 matmul)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args()
    result = bench(args.batch, args.accum, args.seq_len, args.steps, args.compile, args.peak_flops, args.threads)
    print(json.dumps({"host": platform.node(), "cpu_count": os.cpu_count(), "results": [result]}, indent=2))


if __name__ == "__main__":
    main()
