"""GGUF (llama.cpp) Llama checkpoints -> codemix params, config and vocabulary.

`read_gguf(path)` does, in order:

1. Checks the file starts with the GGUF magic and names an architecture the
   codemix decoder can run exactly (`llama`; no RoPE scaling, no partial
   rotary, no experts, no biases).
2. Reads the `ModelConfig` from the metadata (`llama.embedding_length`,
   `llama.block_count`, `llama.attention.head_count[_kv]`, ...). Tied
   embeddings are the absence of `output.weight`.
3. Dequantizes every tensor to float32 (`gguf.quants.dequantize`; Q4_1, Q8_0,
   F16, ... all work). GGUF lists shapes fastest dimension first, so a tensor
   with GGUF shape [in, out] is a numpy [out, in] array: the HF layout.
4. Undoes the row permutation that llama.cpp's converter applies to the q and
   k projections: within each head, HF's "rotate half" layout keeps the two
   halves of the head contiguous (rows 0..H/2-1, then H/2..H-1), GGUF
   interleaves them (0, H/2, 1, H/2+1, ...) for llama.cpp's pairwise RoPE.
5. Maps the HF-layout tensors to codemix params (hf_io.hf_to_codemix).
6. Rebuilds the byte-level BPE vocabulary from `tokenizer.ggml.tokens`,
   `token_type`, `merges` and `pre` (bpe_vocab.BPEVocabulary). A GGUF with
   another tokenizer model (e.g. SentencePiece `llama`) imports without a
   vocabulary, and `vocab_problem` says why.

`write_gguf(path, cfg, params, vocab_spec)` goes the other way (float32
tensors, q/k permuted back), so llama.cpp can run a codemix model; the tests use
it to compare logits with llama.cpp on exactly the same weights.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from codemix.errors import GGUFImportError
from codemix.model.bpe_vocab import FORMAT, PRE_TOKENIZERS
from codemix.model.config import ModelConfig
from codemix.model.hf_io import (
    codemix_to_hf,
    expected_shapes,
    hf_to_codemix,
)

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SUPPORTED_ARCHITECTURES = ("llama",)

_LAYER_TENSORS = {  # GGUF suffix -> HF name pattern
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_GLOBAL_TENSORS = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                   "output.weight": "lm_head.weight"}


@dataclasses.dataclass
class ImportedModel:
    """What a checkpoint import produced (params are numpy float32)."""

    cfg: ModelConfig
    params: dict
    vocab_spec: dict | None
    vocab_problem: str | None
    source: str
    metadata: dict


def gguf_to_hf_name(name: str) -> str | None:
    if name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and parts[3] == "weight":
        hf = _LAYER_TENSORS.get(parts[2])
        if hf is not None:
            return f"model.layers.{parts[1]}.{hf}.weight"
    return None


def hf_to_gguf_name(name: str) -> str:
    for g, h in _GLOBAL_TENSORS.items():
        if h == name:
            return g
    parts = name.split(".")  # model.layers.<i>.<module>.<proj>.weight
    hf = ".".join(parts[3:-1])
    for g, h in _LAYER_TENSORS.items():
        if h == hf:
            return f"blk.{parts[2]}.{g}.weight"
    raise KeyError(name)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """GGUF's interleaved q/k rows -> HF's rotate-half rows ([heads*H, D])."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of `unpermute_qk` (what llama.cpp's converter does)."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def _check_magic(path: str) -> None:
    if not os.path.isfile(path):
        raise GGUFImportError(f"{path} does not exist; pass a .gguf file or an HF checkpoint directory.")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFImportError(
            f"{path} is not a GGUF file (it starts with {magic!r}, GGUF files start with {GGUF_MAGIC!r})."
        )


def _fields(reader) -> dict:
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            out[key] = field.contents()
        except (ValueError, TypeError, IndexError):  # an exotic value type, not needed here
            log.debug("GGUF field %s has an unreadable value", key)
    return out


def _f32(value) -> float:
    """A float32 metadata value as the shortest decimal that is the same float32
    (1e-05 rather than 9.999999747378752e-06), so gin files read naturally."""
    return float(str(np.float32(value)))


def config_from_metadata(meta: dict, tensor_names: set[str], source: str) -> ModelConfig:
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFImportError(
            f"{source}: architecture {arch!r} can't be represented by the codemix decoder; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)} (Llama-family: SwiGLU, RMSNorm, RoPE)."
        )

    def get(key, default=None, required=True):
        value = meta.get(f"{arch}.{key}", default)
        if value is None and required:
            raise GGUFImportError(f"{source}: metadata key {arch}.{key!r} is missing; the file is incomplete.")
        return value

    problems = []
    if get("expert_count", 0, required=False):
        problems.append(f"{get('expert_count')} experts (mixture of experts)")
    scaling = get("rope.scaling.type", None, required=False)
    if scaling not in (None, "none") or "rope_freqs.weight" in tensor_names:
        problems.append(f"RoPE scaling ({scaling or 'rope_freqs.weight'})")
    biases = sorted(n for n in tensor_names if n.endswith(".bias"))
    if biases:
        problems.append(f"bias tensors ({biases[0]}, ...)")
    if problems:
        raise GGUFImportError(f"{source}: the codemix decoder can't represent " + "; ".join(problems) + ".")
    d_model = int(get("embedding_length"))
    heads = int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", d_model // heads, required=False))
    rot = get("rope.dimension_count", head_dim, required=False)
    if int(rot) != head_dim:
        raise GGUFImportError(
            f"{source}: RoPE rotates {rot} of {head_dim} head dimensions; codemix rotates the whole head."
        )
    if int(get("attention.value_length", head_dim, required=False)) != head_dim:
        raise GGUFImportError(f"{source}: value head width differs from key head width; codemix needs them equal.")
    vocab = meta.get(f"{arch}.vocab_size") or len(meta.get("tokenizer.ggml.tokens") or []) or None
    if vocab is None:
        raise GGUFImportError(f"{source}: neither {arch}.vocab_size nor tokenizer.ggml.tokens is present.")
    return ModelConfig(
        vocab_size=int(vocab),
        d_model=d_model,
        num_layers=int(get("block_count")),
        num_heads=heads,
        num_kv_heads=int(get("attention.head_count_kv", heads, required=False)),
        head_dim=head_dim,
        d_ff=int(get("feed_forward_length")),
        activation="swiglu",
        norm="rmsnorm",
        norm_eps=_f32(get("attention.layer_norm_rms_epsilon")),
        rope_theta=_f32(get("rope.freq_base", 10000.0, required=False)),
        tie_embeddings="output.weight" not in tensor_names,
    )


def vocab_spec_from_metadata(meta: dict) -> tuple[dict | None, str | None]:
    """(spec for BPEVocabulary, None) or (None, why there is no vocabulary)."""
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        return None, f"tokenizer model {model!r} is not byte-level BPE ('gpt2'); only that is supported"
    pre = meta.get("tokenizer.ggml.pre", "gpt2")
    if pre == "default":
        pre = "gpt2"
    if pre not in PRE_TOKENIZERS:
        return None, f"pre-tokenizer {pre!r} is not one of {sorted(PRE_TOKENIZERS)}"
    if meta.get("tokenizer.ggml.add_bos_token") or meta.get("tokenizer.ggml.add_eos_token"):
        log.warning("this GGUF asks for BOS/EOS to be added to prompts; codemix tasks add EOS only.")

    def opt_int(key):
        v = meta.get(key)
        return None if v is None else int(v)

    spec = {
        "format": FORMAT,
        "pre": pre,
        "tokens": list(meta["tokenizer.ggml.tokens"]),
        "token_types": [int(t) for t in meta.get("tokenizer.ggml.token_type") or []],
        "merges": list(meta.get("tokenizer.ggml.merges") or []),
        "bos_id": opt_int("tokenizer.ggml.bos_token_id"),
        "eos_id": opt_int("tokenizer.ggml.eos_token_id"),
        "unk_id": opt_int("tokenizer.ggml.unknown_token_id"),
        "pad_id": opt_int("tokenizer.ggml.padding_token_id"),
        "chat_template": meta.get("tokenizer.chat_template"),
    }
    return spec, None


class _Truncated(Exception):
    pass


def expected_gguf_size(path: str) -> int:
    """The size a GGUF file must have: the end of its last tensor's data, from
    the header alone (key/values skipped by type, tensor infos read). Raises
    _Truncated if the header itself runs past the end of the file."""
    import struct

    import gguf

    scalar = {gguf.GGUFValueType.UINT8: 1, gguf.GGUFValueType.INT8: 1, gguf.GGUFValueType.UINT16: 2,
              gguf.GGUFValueType.INT16: 2, gguf.GGUFValueType.UINT32: 4, gguf.GGUFValueType.INT32: 4,
              gguf.GGUFValueType.FLOAT32: 4, gguf.GGUFValueType.BOOL: 1, gguf.GGUFValueType.UINT64: 8,
              gguf.GGUFValueType.INT64: 8, gguf.GGUFValueType.FLOAT64: 8}
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        def read(n: int) -> bytes:
            b = f.read(n)
            if len(b) < n:
                raise _Truncated(f"the header needs more than the file's {size:,} bytes")
            return b

        def u32() -> int:
            return struct.unpack("<I", read(4))[0]

        def u64() -> int:
            return struct.unpack("<Q", read(8))[0]

        def skip_value(vtype: int) -> int | None:
            if vtype == gguf.GGUFValueType.STRING:
                read(u64())
            elif vtype == gguf.GGUFValueType.ARRAY:
                item, count = u32(), u64()
                if item in scalar:
                    read(scalar[item] * count)
                else:
                    for _ in range(count):
                        skip_value(item)
            else:
                b = read(scalar[gguf.GGUFValueType(vtype)])
                return int.from_bytes(b, "little") if vtype == gguf.GGUFValueType.UINT32 else None
            return None

        read(4)  # magic
        u32()  # version
        n_tensors, n_kv = u64(), u64()
        alignment = gguf.GGUF_DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            key = read(u64()).decode("utf-8", "replace")
            value = skip_value(u32())
            if key == "general.alignment" and value:
                alignment = value
        end = 0
        for _ in range(n_tensors):
            read(u64())  # name
            dims = [u64() for _ in range(u32())]
            ttype, offset = u32(), u64()
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
            end = max(end, offset + int(np.prod(dims, dtype=np.int64)) // block * type_size)
        start = f.tell()
    start += (alignment - start % alignment) % alignment
    return start + end


def _open(path: str):
    _check_magic(path)
    import gguf

    try:
        return gguf.GGUFReader(path)
    except Exception as e:  # truncated or corrupt: gguf raises ValueError/IndexError/...
        size = os.path.getsize(path)
        try:
            expected = expected_gguf_size(path)
        except _Truncated as t:
            raise GGUFImportError(f"{path} is truncated: {t}; download or export it again.") from e
        except (ValueError, KeyError):  # an unknown type in the header: report the reader's error
            expected = None
        if expected is not None and size < expected:
            raise GGUFImportError(
                f"{path} is truncated: its header describes {expected:,} bytes but the file has {size:,} "
                f"({expected - size:,} missing); download or export it again."
            ) from e
        raise GGUFImportError(f"{path} could not be parsed as GGUF: {e}") from e


def read_gguf_metadata(path: str) -> dict:
    """The GGUF's key/value metadata (config and tokenizer), without the tensors."""
    return _fields(_open(path))


def read_gguf(path: str) -> ImportedModel:
    """Import a GGUF file (see the module docstring)."""
    import gguf

    reader = _open(path)
    meta = _fields(reader)
    names = {t.name for t in reader.tensors}
    cfg = config_from_metadata(meta, names, path)
    unknown = sorted(n for n in names if gguf_to_hf_name(n) is None)
    if unknown:
        raise GGUFImportError(
            f"{path} has tensors the codemix decoder can't represent: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}."
        )
    missing = [hf_to_gguf_name(n) for n in expected_shapes(cfg) if hf_to_gguf_name(n) not in names]
    if missing:
        raise GGUFImportError(
            f"{path} has no tensor {missing[0]!r}{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; "
            f"a {cfg.num_layers}-layer Llama model needs it. The file is incomplete or truncated."
        )
    tensors = {}
    for t in reader.tensors:
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape(tuple(int(x) for x in reversed(t.shape)))
        hf_name = gguf_to_hf_name(t.name)
        if hf_name.endswith("q_proj.weight"):
            w = unpermute_qk(w, cfg.num_heads)
        elif hf_name.endswith("k_proj.weight"):
            w = unpermute_qk(w, cfg.num_kv_heads)
        tensors[hf_name] = w
    params = hf_to_codemix(cfg, tensors, source=path)
    spec, problem = vocab_spec_from_metadata(meta)
    if spec is not None and len(spec["tokens"]) > cfg.vocab_size:
        raise GGUFImportError(f"{path}: {len(spec['tokens'])} tokens but vocab_size {cfg.vocab_size}.")
    small_meta = {k: v for k, v in meta.items() if not k.startswith("tokenizer.ggml.")}
    return ImportedModel(cfg, params, spec, problem, os.path.abspath(path), small_meta)


def write_gguf(path: str, cfg: ModelConfig, params: dict, vocab_spec: dict | None, name: str = "codemix") -> None:
    """A float32 GGUF (architecture `llama`) that llama.cpp runs as codemix does."""
    import gguf

    tensors = codemix_to_hf(cfg, params)
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_name(name)
    writer.add_context_length(8192)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_embedding_length(cfg.d_model)
    writer.add_block_count(cfg.num_layers)
    writer.add_feed_forward_length(cfg.d_ff)
    writer.add_head_count(cfg.num_heads)
    writer.add_head_count_kv(cfg.num_kv_heads)
    writer.add_key_length(cfg.head_dim)
    writer.add_value_length(cfg.head_dim)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    if vocab_spec is not None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(vocab_spec["pre"])
        writer.add_token_list(vocab_spec["tokens"])
        if vocab_spec.get("token_types"):
            writer.add_token_types(vocab_spec["token_types"])
        writer.add_token_merges(vocab_spec["merges"])
        for key, add in (("bos_id", writer.add_bos_token_id), ("eos_id", writer.add_eos_token_id),
                         ("unk_id", writer.add_unk_token_id), ("pad_id", writer.add_pad_token_id)):
            if vocab_spec.get(key) is not None:
                add(int(vocab_spec[key]))
        writer.add_add_bos_token(False)
        if vocab_spec.get("chat_template"):
            writer.add_chat_template(vocab_spec["chat_template"])
    for hf_name, w in tensors.items():
        if hf_name.endswith("q_proj.weight"):
            w = permute_qk(w, cfg.num_heads)
        elif hf_name.endswith("k_proj.weight"):
            w = permute_qk(w, cfg.num_kv_heads)
        writer.add_tensor(hf_to_gguf_name(hf_name), np.ascontiguousarray(w, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
