"""Compile the real train step for a TPU slice on this machine, without a TPU.

`libtpu` (the `[tpu]` extra) carries the TPU compiler. JAX asks it for a
slice's topology (`jax.experimental.topologies.get_topology_desc`), which
gives device objects of that slice that exist only for compiling; the train
step, jitted with the trainer's shardings over a mesh of those devices, is
lowered for abstract inputs and compiled ahead of time. Nothing is allocated
or run. What comes back is the compiler's own account:

  memory   `memory_analysis()` per chip: arguments, outputs (aliased with the
           donated state), temporaries and generated code. Peak per chip =
           arguments + outputs - aliased + temporaries.
  FLOPs    `cost_analysis()` per chip. XLA counts the body of a loop once,
           whatever its trip count, and the step has loops (gradient
           accumulation, scanned layers). So when the step loops, FLOPs and
           bytes accessed come from two small probe compiles of the same step
           at depth 1 and 2 (unrolled, one microbatch of the same rows):
           step = accum x (probe1 + (layers - 1) x (probe2 - probe1)). That
           counts the optimizer update `accum` times; it is ~1e-4 of a step.
  roofline an estimate of step time: max(FLOPs / peak FLOP/s, bytes accessed
           / HBM bandwidth) per chip, from the datasheet. It ignores
           collectives and imperfect overlap, so it is a lower bound on step
           time and an upper bound on MFU.

Slices are named as Cloud TPU names them ("v4-32", "v5p-32", "v5litepod-16";
"v5e-16" is accepted for the latter, "v6e-16"). v4 and v5p count TensorCores
(two per chip, one JAX device per chip: megacore); v5e and v6e count chips.

libtpu takes a lock file so that one process per machine drives the TPU;
compiling touches no TPU, so `ALLOW_MULTIPLE_LIBTPU_LOAD` is set to let a
second process compile beside the first.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time

import numpy as np

from codemix.model.config import ModelConfig

log = logging.getLogger(__name__)

GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
    """Datasheet figures of one TPU chip (Cloud TPU system architecture pages)."""

    generation: str      # the accelerator-type prefix: v4, v5p, v5litepod, v6e
    topology_prefix: str  # libtpu's topology name prefix
    cores_in_name: int   # units the accelerator name counts per chip
    dims: int            # topology dimensions (3D torus or 2D)
    hbm_gib: float
    peak_flops: float    # dense bf16 FLOP/s
    hbm_bandwidth: float  # bytes/s
    chip_config: str | None  # "megacore": the chip's two TensorCores are one device


CHIPS = {
    "v4": Chip("v4", "v4", 2, 3, 32, 275e12, 1228e9, "megacore"),
    "v5p": Chip("v5p", "v5p", 2, 3, 95, 459e12, 2765e9, "megacore"),
    "v5litepod": Chip("v5litepod", "v5e", 1, 2, 16, 197e12, 819e9, None),
    "v6e": Chip("v6e", "v6e", 1, 2, 32, 918e12, 1640e9, None),
}
ALIASES = {"v5e": "v5litepod"}
EXAMPLES = "v4-8, v4-32, v4-128, v5p-32, v5e-16 (= v5litepod-16), v5litepod-64, v6e-16"


def parse_slice(accelerator: str) -> tuple[Chip, int]:
    """(chip, number of chips) of a slice name such as "v4-32"."""
    m = re.fullmatch(r"(v4|v5p|v5litepod|v5e|v6e)-(\d+)", accelerator.strip().lower())
    if not m:
        raise ValueError(
            f"unknown TPU slice {accelerator!r}; the known generations are "
            f"{', '.join(sorted(list(CHIPS) + list(ALIASES)))}, named like {EXAMPLES}."
        )
    chip = CHIPS[ALIASES.get(m.group(1), m.group(1))]
    n = int(m.group(2))
    chips = n // chip.cores_in_name
    if chips < 1 or chips & (chips - 1) or n % chip.cores_in_name:
        raise ValueError(
            f"TPU slice {accelerator!r}: {chips} chips is not a power of two; "
            f"use one of the slice sizes Cloud TPU offers, e.g. {EXAMPLES}."
        )
    return chip, chips


def topology_shape(chip: Chip, chips: int) -> tuple[int, ...]:
    """The slice's torus shape: v4/v5p 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4, ...;
    v5e/v6e 1x1, 1x2, 2x2, 2x4, 4x4, 4x8, ... (each doubling grows the last
    of the smallest dimensions, as Cloud TPU's slice shapes do)."""
    dims = [2, 2, 1] if chip.dims == 3 and chips >= 4 else [1] * chip.dims
    while math.prod(dims) < chips:
        smallest = min(dims)
        i = max(j for j, d in enumerate(dims) if d == smallest)
        dims[i] *= 2
    return tuple(dims)


def _import_libtpu():
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        import libtpu  # noqa: F401
    except ImportError as e:
        import jax

        raise ValueError(
            f"compiling for a TPU slice needs libtpu, which is not installed; install the "
            f"`tpu` extra: pip install -e '.[tpu]' (or pip install 'jax[tpu]=={jax.__version__}')."
        ) from e


def slice_devices(accelerator: str):
    """JAX devices of the named slice, for compiling only."""
    _import_libtpu()
    from jax.experimental import topologies

    chip, chips = parse_slice(accelerator)
    shape = topology_shape(chip, chips)
    host = tuple(min(d, b) for d, b in zip(shape, (2, 2, 1)))
    kwargs = {"chip_config_name": chip.chip_config} if chip.chip_config else {}
    name = f"{chip.topology_prefix}:{'x'.join(map(str, shape))}"
    devices = topologies.get_topology_desc(
        platform="tpu", topology_name=name, chips_per_host_bounds=host + (1,) * (3 - len(host)),
        num_slices=1, **kwargs).devices
    if len(devices) != chips:
        raise RuntimeError(f"libtpu gave {len(devices)} devices for {name}, expected {chips}.")
    return devices


@dataclasses.dataclass(frozen=True)
class CompiledStep:
    accelerator: str
    devices: int
    mesh: dict
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    code_bytes: int
    flops: float              # per chip per step (see the module docstring)
    bytes_accessed: float     # per chip per step
    flops_source: str         # "compiled step" or "depth probes"
    compile_s: float
    probe_s: float
    hbm_bytes: float
    peak_flops: float
    hbm_bandwidth: float
    model_flops: float        # per chip per step, model.info's formula

    @property
    def peak_bytes(self) -> int:
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes

    @property
    def roofline_step_s(self) -> float | None:
        """None when the FLOPs count loop bodies once (no probes): no estimate then."""
        if self.flops_source == "loop bodies counted once":
            return None
        return max(self.flops / self.peak_flops, self.bytes_accessed / self.hbm_bandwidth)

    @property
    def roofline_mfu(self) -> float | None:
        step = self.roofline_step_s
        return None if step is None else self.model_flops / (step * self.peak_flops)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(peak_bytes=self.peak_bytes, roofline_step_s=self.roofline_step_s,
                   roofline_mfu=self.roofline_mfu)
        return out


def _lower_step(cfg: ModelConfig, global_batch: int, seq_len: int, mesh, grad_accum_steps: int):
    """The trainer's step (state_layout shardings, schedule numbers as inputs,
    8 source slots, buffer donation), lowered for abstract inputs on `mesh`."""
    import jax

    from codemix.train.optimizer import make_optimizer, make_schedule
    from codemix.train.state import state_layout
    from codemix.train.step import jit_train_step, make_train_step, source_slots

    schedule = make_schedule(total_steps=1000)
    optimizer = make_optimizer(schedule)
    layout = state_layout(cfg, optimizer, mesh)
    step = make_train_step(cfg, optimizer, schedule, source_slots(2), grad_accum_steps,
                           layout.row_sharding)
    jitted = jit_train_step(step, layout.shardings, layout.batch_shardings, mesh, schedule_params=True)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def abstract(tree, shardings):
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            tree, shardings)

    state = abstract(layout.abstract_state(), layout.shardings)
    batch = abstract(layout.abstract_batch(global_batch, seq_len), layout.batch_shardings)
    sched = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype, sharding=replicated)
             for k, v in schedule.params().items()}
    return jitted.lower(state, batch, sched)


def _cost(compiled) -> tuple[float, float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


def _unrolled(cfg: ModelConfig) -> dict:
    return {"scan_layers": False} if hasattr(cfg, "scan_layers") else {}


def compile_step(cfg: ModelConfig, global_batch: int, seq_len: int, mesh_spec: dict,
                 accelerator: str, grad_accum_steps: int = 1, probes: bool = True) -> CompiledStep:
    """Compile the train step for `accelerator` (see the module docstring).

    `mesh_spec`: make_mesh's data/fsdp/tensor sizes (one may be -1).
    `probes`: when the step loops, compile the two depth probes for its FLOPs
    (else FLOPs and bytes are the loop-bodies-once count, flops_source says so).
    """
    from codemix.model.info import flops_per_token
    from codemix.train import partitioning

    chip, _ = parse_slice(accelerator)
    devices = slice_devices(accelerator)
    mesh = partitioning.make_mesh(devices=devices, **mesh_spec)
    t0 = time.perf_counter()
    compiled = _lower_step(cfg, global_batch, seq_len, mesh, grad_accum_steps).compile()
    compile_s = time.perf_counter() - t0
    m = compiled.memory_analysis()
    flops, nbytes = _cost(compiled)
    source, probe_s = "compiled step", 0.0
    loops = grad_accum_steps > 1 or getattr(cfg, "scan_layers", False)
    if loops and probes:
        t0 = time.perf_counter()
        micro = global_batch // grad_accum_steps
        costs = []
        for depth in (1, 2):
            probe = cfg.replace(num_layers=depth, **_unrolled(cfg))
            costs.append(_cost(_lower_step(probe, micro, seq_len, mesh, 1).compile()))
        (f1, b1), (f2, b2) = costs
        flops = grad_accum_steps * (f1 + (cfg.num_layers - 1) * (f2 - f1))
        nbytes = grad_accum_steps * (b1 + (cfg.num_layers - 1) * (b2 - b1))
        source, probe_s = "depth probes", time.perf_counter() - t0
    elif loops:
        source = "loop bodies counted once"
    n = len(devices)
    return CompiledStep(
        accelerator=accelerator, devices=n, mesh=dict(mesh.shape),
        argument_bytes=int(m.argument_size_in_bytes), output_bytes=int(m.output_size_in_bytes),
        alias_bytes=int(m.alias_size_in_bytes), temp_bytes=int(m.temp_size_in_bytes),
        code_bytes=int(m.generated_code_size_in_bytes), flops=flops, bytes_accessed=nbytes,
        flops_source=source, compile_s=compile_s, probe_s=probe_s,
        hbm_bytes=chip.hbm_gib * GIB, peak_flops=chip.peak_flops, hbm_bandwidth=chip.hbm_bandwidth,
        model_flops=flops_per_token(cfg, seq_len) * global_batch * seq_len / n,
    )
