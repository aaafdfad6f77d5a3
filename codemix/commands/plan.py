"""`codemix plan --gin_file ... [--accelerator v4-32 | --devices N] [--backend B] [--compile [SLICE]]`:
memory per device, FLOPs per step, steps for the token budget and wall time at an MFU,
for the run the gin files describe (see codemix/train/planner.py).

`--compile v4-32` (or `--compile` with `--accelerator`) compiles the real train
step for that TPU slice on this machine with libtpu's compiler (the `[tpu]`
extra; codemix/train/tpu_compile.py) and prints the compiler's memory per
chip and FLOPs beside the planner's, the compile time, and a roofline estimate
of step time and MFU. `--compile` alone compiles on this host's devices."""
from __future__ import annotations

import json
import math

GIB = 1024**3


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
    p.add_argument("--compile", nargs="?", const="", default=None, metavar="SLICE",
                   help="also compile the real step and print the compiler's memory and FLOPs: for a "
                        "TPU slice (v4-32, v5e-16, v5p-32; needs the [tpu] extra), for --accelerator's "
                        "slice when no SLICE is named, else on this host's devices")
    p.add_argument("--no_probes", action="store_true",
                   help="with --compile SLICE: skip the two small depth-probe compiles that count "
                        "the FLOPs of a looping step (accumulation, scanned layers)")
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


def _compiled_lines(c: dict, hbm_gib: float | None) -> list[str]:
    """The TPU compiler's numbers beside the planner's (per chip)."""
    lp = c["planner"]

    def row(name, compiled, planned, note=""):
        ratio = f"{planned / compiled:6.2f}x" if compiled else "     -"
        return f"  {name:<13}{_fmt_bytes(compiled)} {_fmt_bytes(planned)}  {ratio}{note}"

    planned_out = lp["state_bytes"]
    lines = [
        (f"compiled     for {c['accelerator']} ({c['devices']} chips, mesh "
         f"{' '.join(f'{k}={v}' for k, v in c['mesh'].items())}) by libtpu in {c['compile_s']:.1f} s"),
        "  per chip       compiler      planner  planner/compiler",
        row("arguments", c["argument_bytes"], lp["argument_bytes"]),
        row("outputs", c["output_bytes"], planned_out, "   (aliased with the donated state: "
            f"{_fmt_bytes(c['alias_bytes']).strip()})"),
        row("temporaries", c["temp_bytes"], lp["temp_bytes"]),
        row("peak", c["peak_bytes"], lp["peak_bytes"], "   (arguments + outputs - aliased + temporaries)"),
    ]
    if hbm_gib:
        free = hbm_gib * GIB - c["peak_bytes"]
        lines.append(f"  HBM          {hbm_gib:g} GiB: {'fits' if free >= 0 else 'DOES NOT FIT'}, "
                     f"{free / GIB:.2f} GiB ({free / (hbm_gib * GIB):.0%}) to spare")
    lines += [
        (f"  FLOPs        {c['flops']:.3e} per chip per step from the compiler ({c['flops_source']}"
         + (f", {c['probe_s']:.1f} s" if c["probe_s"] else "") + f"); the model's formula: "
         f"{c['model_flops']:.3e} (ratio {c['flops'] / c['model_flops']:.2f})"),
        ("  roofline     none: the FLOPs count each loop body once (drop --no_probes)"
         if c["roofline_step_s"] is None else
         f"  roofline     ESTIMATE: {_fmt_time(c['roofline_step_s'])} per step, MFU <= "
         f"{c['roofline_mfu']:.2f} (max of {c['flops']:.2e} FLOPs / {c['peak_flops']:.3g} FLOP/s and "
         f"{c['bytes_accessed']:.2e} bytes / {c['hbm_bandwidth'] / 1e9:.0f} GB/s; no collectives)")
    ]
    return lines


def run(args) -> int:
    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    from codemix import config
    from codemix.model.config import ModelConfig
    from codemix.train import planner, tpu_compile
    config.parse(args.gin_file, args.gin_param, finalize=False)
    cfg = ModelConfig()
    it = _bindings("make_train_iterator")
    tr = _bindings("train")
    mesh_spec = {"data": 1, "fsdp": -1, "tensor": 1}
    mesh_spec.update({k: v for k, v in _bindings("make_mesh").items() if k in mesh_spec})
    kind = None
    tpu_slice = args.compile or (args.accelerator if args.compile == "" else None)
    if args.compile and args.devices:
        raise ValueError("--compile SLICE sets the device count; drop --devices.")
    if args.compile and args.accelerator and args.compile != args.accelerator:
        raise ValueError(f"--compile {args.compile} and --accelerator {args.accelerator} name two "
                         f"slices; name one.")
    accelerator = args.accelerator or args.compile or None
    if accelerator:
        chip, devices = tpu_compile.parse_slice(accelerator)
        kind = chip.generation
    elif args.devices:
        devices = args.devices
    else:
        import jax

        devices = jax.device_count()
    kind = kind or (args.gpu.lower() if args.gpu else None)
    peak = args.peak_flops or tr.get("peak_flops") or PEAK.get(kind)
    hbm = args.hbm_gib or HBM_GIB.get(kind)
    mesh = planner.mesh_shape(num_devices=devices, **mesh_spec)
    backend = args.backend or ("tpu" if accelerator else "gpu" if args.gpu else _local_backend())

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
    if tpu_slice:
        c = tpu_compile.compile_step(cfg, p.global_batch, p.seq_len, mesh_spec, tpu_slice,
                                     int(tr.get("grad_accum_steps", 1)), probes=not args.no_probes)
        tpu_plan = p if backend == "tpu" else make_plan("tpu")
        out["tpu_compiled"] = {**c.to_dict(), "planner": tpu_plan.to_dict()}
    elif args.compile is not None:
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
    if tpu_slice:
        lines += _compiled_lines(out["tpu_compiled"], hbm)
    elif args.compile is not None:
        c = out["compiled"]
        lp = c["planner"]
        lines.append(f"compiled     on {c['platform']}: arguments {_fmt_bytes(c['argument_bytes'])}, "
                     f"temporaries {_fmt_bytes(c['temp_bytes'])} (planner for {lp['backend']}: "
                     f"{_fmt_bytes(lp['argument_bytes'])}, {_fmt_bytes(lp['temp_bytes'])})")
    print("\n".join(lines))
    if not math.isfinite(p.flops_per_step):
        return 1
    return 0
