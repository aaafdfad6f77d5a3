"""`codemix import`: bring a Llama-family checkpoint into codemix, or export one.

    codemix import --from SmolLM2-135M-Instruct.Q4_1.gguf --output /tmp/smollm2
    codemix import --from /path/to/hf_llama_dir --output /tmp/llama
    codemix import --from /tmp/smollm2 --export_hf /tmp/smollm2_hf

The model directory it writes and reads is described in codemix/model/model_dir.py.
(The module is import_.py because `import` is a Python keyword.)
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True,
                        help="a .gguf file, an HF Llama dir (config.json + safetensors), or with "
                             "--export_hf a codemix model dir")
    parser.add_argument("--output", default=None, help="model directory to write (import)")
    parser.add_argument("--export_hf", default=None, help="write the codemix model at --from as an HF Llama dir")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def run(args: argparse.Namespace) -> int:
    from codemix.model import decoder, hf_io
    from codemix.model.model_dir import (
        VOCAB_FILE,
        import_checkpoint,
        load_model_dir,
        write_model_dir,
    )

    start = time.perf_counter()
    try:
        if args.export_hf:
            cfg, params, spec = load_model_dir(args.source)
            ids = {f"{k}_token_id": spec.get(f"{k}_id") for k in ("bos", "eos", "pad")} if spec else None
            hf_io.export_hf(args.export_hf, cfg, params, ids)
            if spec is not None:
                import json

                from codemix.model.bpe_vocab import hf_tokenizer_from_spec

                with open(os.path.join(args.export_hf, VOCAB_FILE), "w", encoding="utf-8") as f:
                    json.dump(spec, f, ensure_ascii=False)
                with open(os.path.join(args.export_hf, "tokenizer.json"), "w", encoding="utf-8") as f:
                    json.dump(hf_tokenizer_from_spec(spec), f, ensure_ascii=False)
            print(f"codemix import: exported {args.source} to {args.export_hf} "
                  f"({time.perf_counter() - start:.1f}s)")
            return 0
        if not args.output:
            print("codemix import: pass --output DIR (or --export_hf DIR).", file=sys.stderr)
            return 2
        model = import_checkpoint(args.source)
        note = f"No vocabulary: {model.vocab_problem}." if model.vocab_problem else ""
        write_model_dir(args.output, model.cfg, model.params, model.vocab_spec, model.source,
                        overwrite=args.overwrite, note=note)
    except (hf_io.CheckpointFormatError, FileNotFoundError, FileExistsError) as e:
        print(f"codemix import: {e}", file=sys.stderr)
        return 2
    n = decoder.param_count(model.params)
    print(f"codemix import: {model.source} -> {os.path.abspath(args.output)}\n"
          f"  {model.cfg.num_layers} layers, d_model {model.cfg.d_model}, {model.cfg.num_heads}/"
          f"{model.cfg.num_kv_heads} heads, vocab {model.cfg.vocab_size}, tied={model.cfg.tie_embeddings}, "
          f"{n / 1e6:.1f}M params, {time.perf_counter() - start:.1f}s")
    if model.vocab_problem:
        print(f"  WARNING: no vocabulary written ({model.vocab_problem}); bind one in model.gin to evaluate.")
    return 0
