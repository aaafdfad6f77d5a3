"""The byte-level BPE vocabulary's spec: its file format, checks and HF conversion.

A spec (written by `codemix import` as `DIR/bpe_vocab.json`, read by
`codemix.model.bpe_vocab.BPEVocabulary`) is a JSON object:

    {"format": "codemix-bpe-1", "pre": "smollm", "tokens": [...],
     "token_types": [...], "merges": ["a b", ...], "bos_id", "eos_id", "unk_id"}

`pre` names the pre-tokenizer regexes (`PRE_TOKENIZERS`); `token_types` are GGUF
token types, of which `SPECIAL_TYPES` are matched as whole tokens. An HF
`tokenizer.json` of a byte-level BPE converts to a spec and back
(`spec_from_hf_tokenizer`, `hf_tokenizer_from_spec`).
"""
from __future__ import annotations

import json

from codemix.errors import BPEVocabularyError

FORMAT = "codemix-bpe-1"
VOCAB_FILE = "bpe_vocab.json"  # its name inside an imported model directory

_GPT2_WORDS = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# `tokenizer.ggml.pre` -> the regexes llama.cpp applies in order (llama-vocab.cpp).
# llama.cpp writes GPT-2's splitter without the final `|\s+`, but its own
# splitter for that pattern and its gap handling behave as if it were there.
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "gpt2": (_GPT2_WORDS,),
    "smollm": (r"\p{N}", _GPT2_WORDS),
    "starcoder": (r"\p{N}", _GPT2_WORDS),
    "refact": (r"\p{N}", _GPT2_WORDS),
}

# GGUF token types (gguf.TokenType): these are matched as whole tokens.
SPECIAL_TYPES = {2, 3, 4}  # UNKNOWN, CONTROL, USER_DEFINED


def check_spec(spec: dict, path: str | None = None) -> dict:
    """`spec` if it is a vocabulary codemix can use, else a BPEVocabularyError naming `path` and the fix."""
    where = path or "the vocabulary spec"
    if spec.get("format") != FORMAT:
        raise BPEVocabularyError(f"{where} is not a codemix BPE vocabulary (format {spec.get('format')!r}, "
                                 f"expected {FORMAT!r}).")
    for key in ("tokens", "merges", "pre"):
        if key not in spec:
            raise BPEVocabularyError(f"{where} has no {key!r} field.")
    if spec["pre"] not in PRE_TOKENIZERS:
        raise BPEVocabularyError(
            f"{where}: pre-tokenizer {spec['pre']!r} is not supported; codemix knows "
            f"{sorted(PRE_TOKENIZERS)}. Add its regexes (from llama.cpp's llama-vocab.cpp) to "
            f"codemix/model/bpe_spec.py:PRE_TOKENIZERS."
        )
    return spec


# --- HF `tokenizer.json` (the `tokenizers` library's format) ------------------------

def _hf_pre_name(pre: dict | None) -> str | None:
    """Our pre-tokenizer name for an HF pre_tokenizer, or None if it is another kind."""
    if not pre:
        return None
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [(s.get("type"), s.get("individual_digits"), s.get("use_regex", True), s.get("add_prefix_space"))
             for s in steps]
    if kinds == [("ByteLevel", None, True, False)]:
        return "gpt2"
    if kinds == [("Digits", True, True, None), ("ByteLevel", None, True, False)]:
        return "smollm"
    return None


def spec_from_hf_tokenizer(data: dict, special_ids: dict | None = None, source: str = "tokenizer.json") -> dict:
    """A vocabulary spec from an HF byte-level BPE `tokenizer.json`.

    `special_ids` may give bos_id / eos_id / unk_id (from config.json). Added
    tokens become CONTROL (special) or USER_DEFINED types, as llama.cpp's
    converter makes them.
    """
    model = data.get("model") or {}
    if model.get("type") != "BPE" or (data.get("decoder") or {}).get("type") != "ByteLevel":
        raise BPEVocabularyError(f"{source} is not a byte-level BPE tokenizer (model {model.get('type')!r}).")
    if model.get("ignore_merges") or data.get("normalizer"):
        raise BPEVocabularyError(f"{source}: ignore_merges / a normalizer are not supported.")
    pre = _hf_pre_name(data.get("pre_tokenizer"))
    if pre is None:
        raise BPEVocabularyError(
            f"{source}: pre-tokenizer {json.dumps(data.get('pre_tokenizer'))[:200]} is not one codemix knows "
            f"(GPT-2 ByteLevel, optionally after Digits(individual_digits=True))."
        )
    vocab = dict(model["vocab"])
    types = {}
    for added in data.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        types[added["id"]] = 3 if added.get("special") else 4
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    token_types = [5] * size  # UNUSED until filled
    for text, i in vocab.items():
        tokens[i] = text
        token_types[i] = types.get(i, 1)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    ids = special_ids or {}
    return {"format": FORMAT, "pre": pre, "tokens": tokens, "token_types": token_types, "merges": merges,
            "bos_id": ids.get("bos_id"), "eos_id": ids.get("eos_id"), "unk_id": ids.get("unk_id")}


def hf_tokenizer_from_spec(spec: dict) -> dict:
    """The HF `tokenizer.json` equivalent of a spec (for exported checkpoints)."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    pre = byte_level if spec["pre"] == "gpt2" else {
        "type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    types = spec.get("token_types") or [1] * len(spec["tokens"])
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": types[i] == 3} for i, t in enumerate(spec["tokens"]) if types[i] in (3, 4)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": pre, "post_processor": {**byte_level, "trim_offsets": False}, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(spec["tokens"])}, "merges": list(spec["merges"])},
    }
