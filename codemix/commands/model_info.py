"""`codemix model-info`: parameter count and FLOPs per token of a model gin."""
from __future__ import annotations

import json


def add_arguments(p):
    p.add_argument("--gin_file", action="append", required=True, help="Gin file(s) defining ModelConfig.")
    p.add_argument("--gin_param", action="append", default=[], help="Extra gin bindings.")
    p.add_argument("--seq_len", type=int, default=None,
                   help="Sequence length for attention FLOPs (default: the gin's, else 2048).")
    p.add_argument("--json", action="store_true", help="Print JSON only.")


def run(args) -> int:
    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    from codemix import config
    from codemix.model.config import ModelConfig
    from codemix.model.info import model_info
    config.parse(args.gin_file, args.gin_param, finalize=False)
    cfg = ModelConfig()
    seq_len = args.seq_len or config.query("make_train_iterator.sequence_length", 2048)
    info = model_info(cfg, seq_len)
    if args.json:
        print(json.dumps({**info.to_dict(), "config": cfg.to_dict()}, indent=2))
        return 0
    print(f"parameters:            {info.total_params:,} ({info.total_params / 1e6:.1f}M)")
    print(f"  embedding:           {info.embedding_params:,}")
    print(f"  non-embedding:       {info.non_embedding_params:,}")
    print(f"FLOPs per token:       {info.flops_per_token:.4g} (training, seq_len {seq_len})")
    print(f"FLOPs per token (fwd): {info.flops_per_token / 3:.4g}")
    return 0
