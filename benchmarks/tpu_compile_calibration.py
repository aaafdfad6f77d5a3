"""The planner's accelerator model against the TPU compiler, printed as JSON.

    python benchmarks/tpu_compile_calibration.py [--only SUBSTRING] [--probes] [--unrolled]

For each case (model x slice, with the runtime gin's remat and gradient
accumulation, 512 rows x 2048 tokens) it compiles the real train step for
the slice with libtpu on this machine (codemix/train/tpu_compile.py; nothing
runs) and prints one JSON line: the compiler's per-chip arguments, outputs,
temporaries and peak, the planner's (`backend="tpu"`), their ratios, and the
compile time. `--probes` adds the compiler's FLOPs (two depth-probe compiles
per case); `--unrolled` compiles with scan_layers=False (the default is the
scanned model the runtime gins use).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (runtime gin, slice): the runtime gin's documented slice and its 470m / 2p8b settings.
CASES = {
    "470m_v4-32": ("470m", "v4-32", "tpu_v4"),
    "2p8b_v4-32": ("2p8b", "v4-32", "tpu_v4"),
    "470m_v5e-16": ("470m", "v5e-16", "tpu_v5e"),
    "2p8b_v5e-16": ("2p8b", "v5e-16", "tpu_v5e"),
    "470m_v5p-32": ("470m", "v5p-32", "tpu_v5p"),
    "2p8b_v5p-32": ("2p8b", "v5p-32", "tpu_v5p"),
}


def run_case(name, model, accelerator, runtime, probes, unrolled, bindings):
    import codemix.registry  # noqa: F401  (the configurables the gins name)
    import gin
    from codemix import config
    from codemix.model.config import ModelConfig
    from codemix.train import planner, tpu_compile

    gin.clear_config()
    config.parse([f"gin/models/{model}.gin", f"gin/runtime/{runtime}.gin"],
                 [*bindings, *([f"ModelConfig.scan_layers = {not unrolled}"])], finalize=False)
    cfg = ModelConfig()
    accum = int(dict(gin.get_bindings("train")).get("grad_accum_steps", 1))
    chip, chips = tpu_compile.parse_slice(accelerator)
    mesh = planner.mesh_shape(num_devices=chips, data=1, fsdp=-1, tensor=1)
    p = planner.plan(cfg, 512, 2048, mesh, grad_accum_steps=accum, backend="tpu")
    c = tpu_compile.compile_step(cfg, 512, 2048, {"data": 1, "fsdp": -1, "tensor": 1}, accelerator,
                                 accum, probes=probes)
    gib = 1024**3
    return {
        "case": name, "remat": cfg.remat, "accum": accum, "scan_layers": cfg.scan_layers,
        "attention": cfg.attention,
        "compiled_gib": {k: round(getattr(c, k) / gib, 3)
                         for k in ("argument_bytes", "output_bytes", "alias_bytes", "temp_bytes", "peak_bytes")},
        "planner_gib": {"argument_bytes": round(p.argument_bytes / gib, 3), "temp_bytes": round(p.temp_bytes / gib, 3),
                        "peak_bytes": round(p.peak_bytes / gib, 3)},
        "planner_over_compiled": {"temp": round(p.temp_bytes / c.temp_bytes, 3),
                                  "peak": round(p.peak_bytes / c.peak_bytes, 3)},
        "hbm_gib": chip.hbm_gib, "compile_s": round(c.compile_s, 1),
        "flops_per_chip": c.flops, "flops_source": c.flops_source,
        "model_flops_per_chip": c.model_flops,
        "roofline_step_s": c.roofline_step_s, "roofline_mfu": c.roofline_mfu,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="run only the cases whose name contains this")
    ap.add_argument("--probes", action="store_true", help="also count the step's FLOPs (2 more compiles)")
    ap.add_argument("--unrolled", action="store_true", help="compile the unrolled model (scan_layers=False)")
    ap.add_argument("--gin_param", action="append", default=[], help="an extra binding (repeatable)")
    args = ap.parse_args(argv)
    for name, (model, accelerator, runtime) in CASES.items():
        if args.only and args.only not in name:
            continue
        print(json.dumps(run_case(name, model, accelerator, runtime, args.probes, args.unrolled,
                                  args.gin_param)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
