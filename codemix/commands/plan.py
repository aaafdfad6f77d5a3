"""`codemix plan --gin_file ... [--accelerator v4-32 | --devices N] [--backend B]`:
memory per device, FLOPs per step, steps for the token budget and wall time at an MFU,
for the run the gin files describe (see codemix/train/planner.py)."""
from __future__ import annotations

import json
import math


def add_arguments(p):
    p.add_argument("--gin_file", action="append", required=True,
                   help="the run's gin files (model, runtime, stage/experiment), in order")
    p.add_argument("--gin_param", action="append", default=[], help="a gin binding (repeatable)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--accelerator", default=None,
                       help="TPU type (v4-32, v5p-64, v5litepod-16): devices and peak FLOP/s from it")
    where.add_argument("--devices", type=int, default=None, help="number of devices (default: local)")
    p.add_argument("--peak_flops", type=float, default=None,
                   help="peak FLOP/s per device (default: datasheet for --accelerator/--gpu)")
    p.add_argument("--gpu", default=None, help="GPU model for the peak FLOP/s, e.g. h100, a100")
    p.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation for the wall time")
    p.add_argument("--hbm_gib", type=float, default=None, help="device memory to check against (GiB)")
    p.add_argument("--backend", choices=("cpu", "tpu", "gpu"), default=None,
                   help="whose XLA behaviour the temporaries follow (default: tpu with "
                        "--accelerator, gpu with --gpu, else this host's JAX backend)")
    p.add_argument("--compile", action="store_true",
                   help="also compile the step on the local devices and print XLA's memory analysis")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


# HBM per device (GiB) and dense bf16 peak FLOP/s per device, from the data sheets.
HBM_GIB = {"v4": 32, "v5litepod": 16, "v5p": 95, "v6e": 32, "h100": 80, "h200": 141, "a100": 80}
PEAK = {"v4": 275e12, "v5litepod": 197e12, "v5p": 459e12, "v6e": 918e12,
        "h100": 989e12, "h200": 989e12, "a100": 312e12}


def _bindings(name: str) -> dict:
    import gin

    try:
        return dict(gin.get_bindings(name))
    except (ValueError, KeyError):
        return {}


def _local_backend() -> str:
    import jax

    platform = jax.default_backend()
    return platform if platform in ("cpu", "tpu") else "gpu"


def _fmt_bytes(n: float) -> str:
    return f"{n / 1024**3:8.2f} GiB"


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 120:
        return f"{s:.2f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h ({s / 86400:.2f} days)"


def run(args) -> int:
    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    from codemix import config
    from codemix.launch.tpu import generation, topology
    from codemix.model.config import ModelConfig
    from codemix.train import planner
    config.parse(args.gin_file, args.gin_param, finalize=False)
    cfg = ModelConfig()
    it = _bindings("make_train_iterator")
    tr = _bindings("train")
    mesh_spec = {"data": 1, "fsdp": -1, "tensor": 1}
    mesh_spec.update({k: v for k, v in _bindings("make_mesh").items() if k in mesh_spec})
    kind = None
    if args.accelerator:
        devices = topology(args.accelerator).devices
        kind = generation(args.accelerator)
    elif args.devices:
        devices = args.devices
    else:
        import jax

        devices = jax.device_count()
    kind = kind or (args.gpu.lower() if args.gpu else None)
    peak = args.peak_flops or tr.get("peak_flops") or PEAK.get(kind)
    hbm = args.hbm_gib or HBM_GIB.get(kind)
    mesh = planner.mesh_shape(num_devices=devices, **mesh_spec)
    backend = args.backend or ("tpu" if args.accelerator else "gpu" if args.gpu else _local_backend())

    def make_plan(backend):
        return planner.plan(
            cfg,
            global_batch=int(it.get("batch_size", 8)),
            seq_len=int(it.get("sequence_length", 512)),
            mesh=mesh,
            grad_accum_steps=int(tr.get("grad_accum_steps", 1)),
            token_budget=tr.get("token_budget"),
            train_steps=tr.get("train_steps"),
            peak_flops=peak,
            mfu=args.mfu,
            backend=backend,
        )

    p = make_plan(backend)
    out = p.to_dict()
    if args.compile:
        out["compiled"] = planner.compiled_memory(
            cfg, p.global_batch, p.seq_len, {**mesh_spec, "num_devices": devices},
            int(tr.get("grad_accum_steps", 1)))
        local = _local_backend()
        # Compare like with like: the compile ran on this host's backend.
        out["compiled"]["planner"] = (p if local == backend else make_plan(local)).to_dict()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    lines = [
        (f"model        {p.params_total / 1e6:,.1f}M parameters, {cfg.num_layers} blocks, "
         f"remat={cfg.remat}, compute {cfg.dtype}, params {cfg.param_dtype}"),
        f"mesh         {p.devices} devices: data={mesh['data']} fsdp={mesh['fsdp']} tensor={mesh['tensor']}",
        (f"batch        {p.global_batch} rows x {p.seq_len} tokens = {p.global_batch * p.seq_len:,} "
         f"tokens/step; {p.rows_per_device:g} rows per device"),
        f"memory per device (temporaries as XLA:{backend.upper()} keeps them, see planner.py):",
        f"  parameters    {_fmt_bytes(p.param_bytes)}",
        f"  optimizer     {_fmt_bytes(p.opt_bytes)}   (AdamW moments)",
        f"  batch         {_fmt_bytes(p.batch_bytes)}",
        f"  activations   {_fmt_bytes(p.activation_bytes)}   (remat={cfg.remat}, at the backward's start)",
        f"  logits        {_fmt_bytes(p.logits_bytes)}   (loss gradient)",
        f"  weights       {_fmt_bytes(p.weight_bytes)}   (gathered FSDP / compute-dtype copies)",
        *([f"  accumulator   {_fmt_bytes(p.accum_bytes)}   (gradient accumulation)"]
          if p.accum_bytes else []),
        (f"  gradients     {_fmt_bytes(p.grad_bytes)}   (the update: {_fmt_bytes(p.update_bytes).strip()}"
         f" vs backward {_fmt_bytes(p.backward_bytes).strip()}; the larger counts)"),
        f"  total         {_fmt_bytes(p.peak_bytes)}   (accuracy: launch/README.md)"
        + (f"\n  device        {hbm:g} GiB: "
           f"{'fits' if p.peak_bytes <= hbm * 1024**3 * 0.9 else 'DOES NOT FIT'} (with 10% headroom)"
           if hbm else ""),
        f"FLOPs        {p.flops_per_token:.3e} per token, {p.flops_per_step:.3e} per step",
    ]
    if p.steps is not None:
        lines.append(f"steps        {p.steps:,} ({p.tokens:.3e} tokens)")
    if peak:
        lines.append(f"time         {_fmt_time(p.step_time_s)} per step, {_fmt_time(p.wall_time_s)} "
                     f"in all, at MFU {p.mfu:g} of {peak:.3g} FLOP/s per device")
    else:
        lines.append("time         pass --accelerator, --gpu or --peak_flops for wall time")
    if args.compile:
        c = out["compiled"]
        lp = c["planner"]
        lines.append(f"compiled     on {c['platform']}: arguments {_fmt_bytes(c['argument_bytes'])}, "
                     f"temporaries {_fmt_bytes(c['temp_bytes'])} (planner for {lp['backend']}: "
                     f"{_fmt_bytes(lp['argument_bytes'])}, {_fmt_bytes(lp['temp_bytes'])})")
    print("\n".join(lines))
    if not math.isfinite(p.flops_per_step):
        return 1
    return 0
