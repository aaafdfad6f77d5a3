"""The memory planner against XLA, over a grid of runs, printed as JSON.

    python benchmarks/planner_accuracy.py [--quick] [--only SUBSTRING] [--out FILE]

For each case it compiles the real train step on this host's CPU (8 forced
host devices; nothing runs) and prints one JSON line: the planner's
per-device bytes (`backend="cpu"`, plus the TPU-model temporaries for
reference) next to `compiled.memory_analysis()`, and their ratios. The last
line is a summary: how many cases are within 10% on temporaries and on the
total (arguments + temporaries), and the worst ones.

Grid: models tiny and small (gin/models), remat none/full/dots/dots_no_batch,
sequence length 128 and 512 (one and four attention blocks), float32 and
bfloat16 compute, rows per device 2 to 16, meshes: 1 device, fsdp 8,
fsdp 4 x tensor 2, data 2 x fsdp 4; plus GQA, GELU, untied-head and
gradient-accumulation variants. About 100 compiles (~20 min on 2 cores);
--quick runs 10 of them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MESHES = {
    "1dev": {"num_devices": 1},
    "fsdp8": {"fsdp": 8},
    "fsdp4xtensor2": {"fsdp": 4, "tensor": 2},
    "data2xfsdp4": {"data": 2, "fsdp": 4},
}
REMATS = ("none", "full", "dots", "dots_no_batch")


def grid() -> list[dict]:
    """Every case: model, config overrides, global batch, length, mesh, accumulation."""
    cases = []

    def add(model, seq, mesh, batch, accum=1, **kw):
        cases.append({"model": model, "kw": kw, "batch": batch, "seq": seq, "mesh": mesh,
                      "accum": accum})

    for model in ("tiny", "small"):
        for seq in (128, 512):
            for dtype in ("float32", "bfloat16"):
                for remat in REMATS:
                    add(model, seq, "1dev", 8, remat=remat, dtype=dtype)
                for mesh in ("fsdp8", "fsdp4xtensor2", "data2xfsdp4"):
                    for remat in ("none", "full"):
                        add(model, seq, mesh, 16, remat=remat, dtype=dtype)
            for rows in (2, 16):
                add(model, seq, "1dev", rows, remat="none", dtype="float32")
        for remat in ("dots", "dots_no_batch"):
            add(model, 512, "fsdp8", 16, remat=remat, dtype="float32")
        add(model, 128, "1dev", 16, accum=2, remat="none", dtype="float32")
        add(model, 128, "fsdp8", 32, accum=2, remat="none", dtype="float32")
    add("tiny", 512, "1dev", 8, num_kv_heads=2)
    add("tiny", 512, "fsdp4xtensor2", 32, num_kv_heads=2)
    add("tiny", 512, "1dev", 8, activation="gelu")
    add("tiny", 128, "1dev", 8, tie_embeddings=False)
    add("tiny", 128, "fsdp8", 16, tie_embeddings=False, remat="full")
    add("small", 128, "fsdp8", 128, remat="none")  # 16 rows per device
    return cases


QUICK = (
    "tiny/none/L128/float32/1dev/b8", "tiny/full/L512/bfloat16/1dev/b8",
    "small/none/L512/float32/1dev/b8", "small/dots/L128/bfloat16/1dev/b8",
    "tiny/none/L128/float32/fsdp8/b16", "tiny/full/L512/float32/fsdp4xtensor2/b16",
    "small/none/L128/bfloat16/data2xfsdp4/b16", "small/full/L512/float32/fsdp8/b16",
    "tiny/none/L512/float32/1dev/b8/num_kv_heads=2", "small/none/L128/float32/fsdp8/b32/accum2",
)


def name(case: dict) -> str:
    kw = dict(case["kw"])
    parts = [case["model"], kw.pop("remat", "none"), f"L{case['seq']}", kw.pop("dtype", "float32"),
             case["mesh"], f"b{case['batch']}"]
    if case["accum"] > 1:
        parts.append(f"accum{case['accum']}")
    parts += [f"{k}={v}" for k, v in sorted(kw.items())]
    return "/".join(parts)


def model_config(case: dict):
    import gin
    from codemix import config as cm_config
    from codemix.model.config import ModelConfig

    gin.clear_config()
    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    cm_config.parse([f"gin/models/{case['model']}.gin"], finalize=False)
    return ModelConfig().replace(**{"dtype": "float32", "remat": "none", **case["kw"]})


def measure(case: dict) -> dict:
    from codemix.train import planner

    cfg = model_config(case)
    start = time.perf_counter()
    got = planner.compiled_memory(cfg, case["batch"], case["seq"], MESHES[case["mesh"]], case["accum"])
    seconds = time.perf_counter() - start
    p = planner.plan(cfg, case["batch"], case["seq"], got["mesh"], case["accum"], backend="cpu")
    tpu = planner.plan(cfg, case["batch"], case["seq"], got["mesh"], case["accum"], backend="tpu")
    compiled_total = got["argument_bytes"] + got["temp_bytes"]
    return {
        "case": name(case),
        "rows_per_device": p.rows_per_device,
        "planner_temp_bytes": p.temp_bytes,
        "compiled_temp_bytes": got["temp_bytes"],
        "temp_ratio": round(p.temp_bytes / got["temp_bytes"], 4),
        "planner_total_bytes": p.peak_bytes,
        "compiled_total_bytes": compiled_total,
        "total_ratio": round(p.peak_bytes / compiled_total, 4),
        "argument_ratio": round(p.argument_bytes / got["argument_bytes"], 6),
        "planner_parts": {k: getattr(p, k) for k in (
            "activation_bytes", "logits_bytes", "weight_bytes", "accum_bytes", "grad_bytes")},
        "tpu_model_temp_bytes": tpu.temp_bytes,
        "compile_s": round(seconds, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 representative cases")
    ap.add_argument("--only", default=None, help="run the cases whose name contains this")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)
    cases = grid()
    if args.quick:
        cases = [c for c in cases if name(c) in QUICK]
    if args.only:
        cases = [c for c in cases if args.only in name(c)]
    rows = []
    for case in cases:
        row = measure(case)
        rows.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as sink:
                sink.write(line + "\n")

    def within(key):
        return sum(abs(r[key] - 1) <= 0.10 for r in rows)

    summary = {
        "cases": len(rows),
        "temp_within_10pct": within("temp_ratio"),
        "total_within_10pct": within("total_ratio"),
        "worst_temp": sorted(rows, key=lambda r: -abs(r["temp_ratio"] - 1))[:5],
    }
    summary["worst_temp"] = [(r["case"], r["temp_ratio"]) for r in summary["worst_temp"]]
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
