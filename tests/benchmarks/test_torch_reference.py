"""benchmarks/torch_reference.py describes the same model as codemix's `small`.

torch itself is never installed by CI: these tests check the reference's
shape, parameter count and FLOP formula (pure Python) against codemix's, so
the two benchmarks time the same work.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
import gin
from codemix import config as cm_config
from codemix.model.config import ModelConfig
from codemix.model.info import model_info

ROOT = Path(__file__).resolve().parents[2]


def _reference():
    spec = importlib.util.spec_from_file_location("torch_reference", ROOT / "benchmarks" / "torch_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small() -> ModelConfig:
    gin.clear_config()
    try:
        cm_config.parse([str(ROOT / "gin" / "models" / "small.gin")], finalize=False)
        return ModelConfig()
    finally:
        gin.clear_config()


def test_reference_shape_is_gin_small():
    ref, cfg = _reference(), _small()
    for field, value in ref.SMALL.items():
        assert getattr(cfg, field) == value, field
    assert (cfg.activation, cfg.norm, cfg.tie_embeddings, cfg.parallel_block) == ("swiglu", "rmsnorm", True, False)
    assert cfg.num_kv_heads == cfg.num_heads  # the reference is plain multi-head attention


def test_reference_counts_the_same_params_and_flops():
    ref, cfg = _reference(), _small()
    info = model_info(cfg, 512)
    assert ref.param_count(ref.SMALL) == info.total_params
    assert 34.0e6 < info.total_params < 34.2e6
    for seq_len in (128, 512, 2048):
        assert ref.flops_per_token(ref.SMALL, seq_len) == model_info(cfg, seq_len).flops_per_token


def test_vs_torch_without_a_torch_python_is_one_clear_error(monkeypatch, tmp_path):
    import argparse

    import pytest

    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.delenv("CODEMIX_TORCH_PYTHON", raising=False)
    args = argparse.Namespace(torch_python=str(tmp_path / "no-python"))
    with pytest.raises(SystemExit, match="--torch_python PATH"):
        bench.vs_torch(args)
