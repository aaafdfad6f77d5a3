"""Hugging Face Llama checkpoints (config.json + safetensors) <-> codemix params.

The HF Llama layout stores every projection as [out, in] (PyTorch `Linear`),
with heads contiguous along `out`; codemix stores kernels as [in, ...out]:

    HF name                                        codemix param          transform
    model.embed_tokens.weight         [V, D]       embed        [V, D]     as is
    model.layers.i.self_attn.q_proj   [N*H, D]     attn/q       [D, N, H]  T, split heads
    model.layers.i.self_attn.k_proj   [K*H, D]     attn/k       [D, K, H]  T, split heads
    model.layers.i.self_attn.v_proj   [K*H, D]     attn/v       [D, K, H]  T, split heads
    model.layers.i.self_attn.o_proj   [D, N*H]     attn/o       [N, H, D]  T, split heads
    model.layers.i.mlp.gate_proj      [F, D]       mlp/gate     [D, F]     T
    model.layers.i.mlp.up_proj        [F, D]       mlp/up       [D, F]     T
    model.layers.i.mlp.down_proj      [D, F]       mlp/down     [F, D]     T
    model.layers.i.input_layernorm    [D]          attn_norm/scale
    model.layers.i.post_attention_layernorm [D]    mlp_norm/scale
    model.norm.weight                 [D]          final_norm/scale
    lm_head.weight                    [V, D]       lm_head      [D, V]     T (untied only)

(every HF name above ends in `.weight`). Both use the "rotate half" RoPE, so
q/k need no permutation here (GGUF's do; see gguf_import.py). `export_hf`
writes `config.json` and `model.safetensors`; `import_hf` reads them back (one
file or the sharded `model.safetensors.index.json` form). Export then import
reproduces the parameters bit for bit.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from codemix.errors import CheckpointFormatError
from codemix.model import layer_stack
from codemix.model.config import ModelConfig

log = logging.getLogger(__name__)


def _w(name: str) -> str:
    return f"{name}.weight"


def layer_names(i: int) -> dict[str, str]:
    """HF tensor names of decoder block `i`, keyed by codemix param path."""
    p = f"model.layers.{i}"
    return {
        "attn/q": _w(f"{p}.self_attn.q_proj"),
        "attn/k": _w(f"{p}.self_attn.k_proj"),
        "attn/v": _w(f"{p}.self_attn.v_proj"),
        "attn/o": _w(f"{p}.self_attn.o_proj"),
        "mlp/gate": _w(f"{p}.mlp.gate_proj"),
        "mlp/up": _w(f"{p}.mlp.up_proj"),
        "mlp/down": _w(f"{p}.mlp.down_proj"),
        "attn_norm/scale": _w(f"{p}.input_layernorm"),
        "mlp_norm/scale": _w(f"{p}.post_attention_layernorm"),
    }


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every HF tensor a codemix model of `cfg` corresponds to, with its shape."""
    d, n, k, h, f, v = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.d_ff, cfg.vocab_size
    per_layer = {
        "attn/q": (n * h, d), "attn/k": (k * h, d), "attn/v": (k * h, d), "attn/o": (d, n * h),
        "mlp/gate": (f, d), "mlp/up": (f, d), "mlp/down": (d, f),
        "attn_norm/scale": (d,), "mlp_norm/scale": (d,),
    }
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (v, d)
    for i in range(cfg.num_layers):
        for key, name in layer_names(i).items():
            shapes[name] = per_layer[key]
    return shapes


def check_representable(cfg: ModelConfig) -> None:
    """The HF Llama layout has no slot for these codemix options."""
    problems = []
    if cfg.activation != "swiglu":
        problems.append(f"activation={cfg.activation!r} (Llama uses 'swiglu')")
    if cfg.norm != "rmsnorm":
        problems.append(f"norm={cfg.norm!r} (Llama uses 'rmsnorm')")
    if cfg.parallel_block:
        problems.append("parallel_block=True (Llama blocks are sequential)")
    if problems:
        raise CheckpointFormatError(
            "this codemix model can't be written as a Llama checkpoint: " + "; ".join(problems) + "."
        )


def hf_to_codemix(cfg: ModelConfig, tensors: dict[str, np.ndarray], source: str = "checkpoint") -> dict:
    """codemix params (numpy float32, layer keys are ints) from HF-layout tensors,
    stacked when `cfg.scan_layers` (layer_stack.py)."""
    shapes = expected_shapes(cfg)
    for name, shape in shapes.items():
        if name not in tensors:
            raise CheckpointFormatError(
                f"{source} has no tensor {name!r} (a Llama model with {cfg.num_layers} layers needs it); "
                f"the file is incomplete or not a Llama checkpoint."
            )
        if tuple(tensors[name].shape) != shape:
            raise CheckpointFormatError(
                f"{source}: tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {shape} "
                f"from the model config."
            )
    extra = sorted(set(tensors) - set(shapes) - {"lm_head.weight"})
    extra = [e for e in extra if not e.endswith("rotary_emb.inv_freq")]  # a buffer, not a weight
    if extra:
        raise CheckpointFormatError(
            f"{source} has tensors the codemix decoder can't represent: {extra[:5]}"
            f"{' ...' if len(extra) > 5 else ''} (biases, extra norms or another architecture)."
        )
    d, n, k, h = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

    def f32(name):
        return np.asarray(tensors[name], dtype=np.float32)

    params: dict = {
        "embed": f32("model.embed_tokens.weight"),
        "final_norm": {"scale": f32("model.norm.weight")},
        "layers": {},
    }
    if not cfg.tie_embeddings:
        params["lm_head"] = np.ascontiguousarray(f32("lm_head.weight").T)
    for i in range(cfg.num_layers):
        names = layer_names(i)
        t = {key: f32(name) for key, name in names.items()}
        params["layers"][i] = {
            "attn_norm": {"scale": t["attn_norm/scale"]},
            "attn": {
                "q": np.ascontiguousarray(t["attn/q"].T.reshape(d, n, h)),
                "k": np.ascontiguousarray(t["attn/k"].T.reshape(d, k, h)),
                "v": np.ascontiguousarray(t["attn/v"].T.reshape(d, k, h)),
                "o": np.ascontiguousarray(t["attn/o"].T.reshape(n, h, d)),
            },
            "mlp_norm": {"scale": t["mlp_norm/scale"]},
            "mlp": {
                "gate": np.ascontiguousarray(t["mlp/gate"].T),
                "up": np.ascontiguousarray(t["mlp/up"].T),
                "down": np.ascontiguousarray(t["mlp/down"].T),
            },
        }
    return layer_stack.to_layout(params, cfg.scan_layers)


def codemix_to_hf(cfg: ModelConfig, params: dict) -> dict[str, np.ndarray]:
    """HF-layout float32 tensors from codemix params."""
    check_representable(cfg)
    d, n, k, h = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

    def a(x):
        return np.asarray(x, dtype=np.float32)

    params = layer_stack.unstack(params)  # per-layer, whichever layout the model runs
    out = {"model.embed_tokens.weight": a(params["embed"]), "model.norm.weight": a(params["final_norm"]["scale"])}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = np.ascontiguousarray(a(params["lm_head"]).T)
    for i in range(cfg.num_layers):
        layer = params["layers"][i]
        names = layer_names(i)
        attn, mlp = layer["attn"], layer["mlp"]
        values = {
            "attn/q": a(attn["q"]).reshape(d, n * h).T,
            "attn/k": a(attn["k"]).reshape(d, k * h).T,
            "attn/v": a(attn["v"]).reshape(d, k * h).T,
            "attn/o": a(attn["o"]).reshape(n * h, d).T,
            "mlp/gate": a(mlp["gate"]).T,
            "mlp/up": a(mlp["up"]).T,
            "mlp/down": a(mlp["down"]).T,
            "attn_norm/scale": a(layer["attn_norm"]["scale"]),
            "mlp_norm/scale": a(layer["mlp_norm"]["scale"]),
        }
        for key, name in names.items():
            out[name] = np.ascontiguousarray(values[key])
    return out


# --- config.json ---------------------------------------------------------------

_LLAMA_TYPES = ("llama", "mistral")


def config_from_hf(hf: dict, source: str = "config.json") -> ModelConfig:
    """ModelConfig from an HF Llama config.json; anything codemix can't run
    exactly is an error, not an approximation."""
    model_type = hf.get("model_type")
    if model_type not in _LLAMA_TYPES:
        raise CheckpointFormatError(
            f"{source}: model_type {model_type!r} is not supported; codemix imports Llama-family "
            f"decoders ({', '.join(_LLAMA_TYPES)})."
        )
    problems = []
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={hf['hidden_act']!r} (codemix's SwiGLU uses silu)")
    if hf.get("rope_scaling"):
        problems.append(f"rope_scaling={hf['rope_scaling']!r} (codemix's RoPE has no scaling)")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        problems.append("attention_bias/mlp_bias (codemix projections have no bias)")
    if model_type == "mistral" and hf.get("sliding_window"):
        problems.append(f"sliding_window={hf['sliding_window']} (codemix attends to the whole context)")
    if hf.get("pretraining_tp", 1) not in (1, None):
        problems.append(f"pretraining_tp={hf['pretraining_tp']}")
    if problems:
        raise CheckpointFormatError(f"{source}: codemix can't represent " + "; ".join(problems) + ".")
    heads = int(hf["num_attention_heads"])
    d_model = int(hf["hidden_size"])
    return ModelConfig(
        vocab_size=int(hf["vocab_size"]),
        d_model=d_model,
        num_layers=int(hf["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(hf.get("num_key_value_heads") or heads),
        head_dim=int(hf.get("head_dim") or d_model // heads),
        d_ff=int(hf["intermediate_size"]),
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        rope_theta=float(hf.get("rope_theta", 10000.0)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
    )


def config_to_hf(cfg: ModelConfig, vocab_ids: dict | None = None) -> dict:
    check_representable(cfg)
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.d_ff,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "torch_dtype": "float32",
    }
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if vocab_ids and vocab_ids.get(key) is not None:
            hf[key] = int(vocab_ids[key])
    return hf


# --- files ------------------------------------------------------------------------

def _read_safetensors(directory: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    single = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index) as f:
            files = sorted({os.path.join(directory, v) for v in json.load(f)["weight_map"].values()})
    else:
        raise CheckpointFormatError(
            f"{directory} has no model.safetensors or model.safetensors.index.json; codemix reads HF "
            f"checkpoints in safetensors form (convert .bin files with transformers first)."
        )
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        try:
            tensors.update(load_file(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointFormatError(f"{path} is not a readable safetensors file: {e}") from e
    return tensors


def import_hf(directory: str) -> tuple[ModelConfig, dict]:
    """(ModelConfig, codemix params as numpy) from an HF Llama checkpoint dir."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise CheckpointFormatError(f"{directory} has no config.json; pass an HF Llama checkpoint directory.")
    with open(config_path) as f:
        cfg = config_from_hf(json.load(f), config_path)
    tensors = _read_safetensors(directory)
    tied_but_different = (cfg.tie_embeddings and "lm_head.weight" in tensors
                          and not np.array_equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"]))
    if tied_but_different:
        raise CheckpointFormatError(
            f"{config_path} says tie_word_embeddings but lm_head.weight differs from the embedding."
        )
    return cfg, hf_to_codemix(cfg, tensors, source=directory)


def export_hf(directory: str, cfg: ModelConfig, params: dict, vocab_ids: dict | None = None) -> list[str]:
    """Write config.json and model.safetensors (float32) to `directory`.

    `vocab_ids` may carry bos_token_id / eos_token_id / pad_token_id for
    config.json. Returns the written paths.
    """
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    tensors = codemix_to_hf(cfg, params)
    config_path = os.path.join(directory, "config.json")
    with open(config_path, "w") as f:
        json.dump(config_to_hf(cfg, vocab_ids), f, indent=2)
    weights_path = os.path.join(directory, "model.safetensors")
    save_file(tensors, weights_path, metadata={"format": "pt"})
    log.info("wrote %d tensors to %s", len(tensors), weights_path)
    return [config_path, weights_path]
