"""The TPU compiler as the planner's ground truth (codemix/train/tpu_compile.py).

libtpu compiles for a named slice on this CPU machine; these tests check the
slice naming and that a small train step compiles for a v4 slice with the
compiler's memory and FLOPs read back. The paper-scale figures are in
launch/README.md (codemix plan ... --compile v4-32).
"""
from __future__ import annotations

import pytest

from codemix.model.config import ModelConfig
from codemix.train import tpu_compile


@pytest.mark.parametrize("name, chips, shape", [
    ("v4-8", 4, (2, 2, 1)), ("v4-32", 16, (2, 2, 4)), ("v4-128", 64, (4, 4, 4)),
    ("v5p-32", 16, (2, 2, 4)), ("v5e-16", 16, (4, 4)), ("v5litepod-64", 64, (8, 8)), ("v6e-8", 8, (2, 4)),
])
def test_slice_names_give_cloud_tpu_shapes(name, chips, shape):
    chip, n = tpu_compile.parse_slice(name)
    assert n == chips
    assert tpu_compile.topology_shape(chip, n) == shape


@pytest.mark.parametrize("bad", ["v3-32", "h100", "v4-12", "v4"])
def test_unknown_slice_lists_the_known_ones(bad):
    with pytest.raises(ValueError, match="v5litepod"):
        tpu_compile.parse_slice(bad)


def test_missing_libtpu_names_the_tpu_extra(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_libtpu(name, *args, **kwargs):
        if name == "libtpu":
            raise ImportError("No module named 'libtpu'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_libtpu)
    with pytest.raises(ValueError, match=r"\[tpu\]"):
        tpu_compile.slice_devices("v4-8")


@pytest.mark.slow  # one libtpu compile of a 2-block model and its two depth probes (~30 s)
def test_train_step_compiles_for_a_v4_slice_with_memory_and_flops():
    pytest.importorskip("libtpu")
    cfg = ModelConfig(dtype="bfloat16", remat="full", scan_layers=True)
    got = tpu_compile.compile_step(cfg, 32, 256, {"fsdp": -1}, "v4-8", grad_accum_steps=2)
    assert got.devices == 4 and got.mesh == {"data": 1, "fsdp": 4, "tensor": 1}
    assert got.alias_bytes > 0  # the donated state is aliased with the new one
    assert 0 < got.argument_bytes < got.hbm_bytes and got.temp_bytes > 0
    assert got.flops_source == "depth probes"
    # remat "full" recomputes the forward pass: 8/6 of the model's 6N + attention, less
    # the causal half of the attention blocks the kernel skips.
    assert 1.0 < got.flops / got.model_flops < 1.5
    assert 0 < got.roofline_mfu <= 1
