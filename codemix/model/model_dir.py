"""Model directories: what `codemix import` writes and `codemix import --export_hf`,
`codemix eval` and `train.init_from` read.

A model directory holds:

    DIR/params/          Orbax PyTree of the codemix params (float32)
    DIR/model.gin        ModelConfig.* bindings, the vocabulary binding for
                         `codemix eval`, and a header that says where it came from
    DIR/bpe_vocab.json   the byte-level BPE vocabulary (when the source has one)

A stage starts from it with `--gin_file DIR/model.gin --gin_param
"train.init_from='DIR'"`; `codemix eval --checkpoint DIR` evaluates it.
Export reads such a directory (or any dir with params/ and model.gin or
operative_config.gin) and writes HF `config.json` + `model.safetensors`, and
the vocabulary both as `bpe_vocab.json` (exact, preferred on re-import) and
as an HF `tokenizer.json`. Importing an HF dir takes its vocabulary from
`bpe_vocab.json` or else a byte-level BPE `tokenizer.json`.
"""
from __future__ import annotations

import datetime
import logging
import os
import shutil

import numpy as np

log = logging.getLogger(__name__)

# = bpe_vocab.VOCAB_FILE; not imported from there because that pulls in TensorFlow.
VOCAB_FILE = "bpe_vocab.json"
# The ModelConfig fields that describe an imported architecture.
MODEL_FIELDS = ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "head_dim", "d_ff",
                "activation", "norm", "norm_eps", "rope_theta", "tie_embeddings", "parallel_block")


def _gin_value(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(float(str(np.float32(value))))  # shortest text that round-trips in float32
    return repr(value)


def model_gin_text(cfg, directory: str, source: str, has_vocab: bool, note: str = "") -> str:
    lines = [
        f"# Imported by `codemix import` from {source}",
        f"# on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}.{(' ' + note) if note else ''}",
        "# Start a stage from these weights:",
        f"#   --gin_file {directory}/model.gin --gin_param \"train.init_from='{directory}'\"",
        f"# Evaluate: codemix eval --checkpoint {directory} --output results.json",
        "",
    ]
    if has_vocab:
        lines += ["import codemix.model.bpe_vocab", ""]
    lines += [
        "# Where this directory is; `codemix eval` rebinds it to the directory it loads.",
        f"MODEL_DIR = {directory!r}",
        "",
    ]
    lines.append("# The architecture; numerics and training knobs (dtype, remat, z_loss) stay with the run.")
    for field in MODEL_FIELDS:
        lines.append(f"ModelConfig.{field} = {_gin_value(getattr(cfg, field))}")
    lines.append("")
    if has_vocab:
        lines += [
            "# The vocabulary (codemix/eval/vocabulary.py: eval_vocabulary); BPEVocabulary.path may be the",
            f"# model directory, which holds {VOCAB_FILE}.",
            "eval_vocabulary.vocabulary = @BPEVocabulary()",
            "BPEVocabulary.path = %MODEL_DIR",
            "",
        ]
    else:
        lines += ["# No vocabulary was imported; bind eval_vocabulary.task or .vocabulary before evaluating.", ""]
    return "\n".join(lines)


def write_model_dir(directory: str, cfg, params: dict, vocab_spec: dict | None, source: str,
                    overwrite: bool = False, note: str = "") -> None:
    """Write DIR/params (Orbax), DIR/model.gin and DIR/bpe_vocab.json."""
    import json

    import jax
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    if os.path.exists(directory) and os.listdir(directory):
        if not overwrite:
            raise FileExistsError(f"{directory} exists and is not empty; pass --overwrite or another --output.")
        shutil.rmtree(directory)
    os.makedirs(directory, exist_ok=True)
    arrays = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, "params"), arrays)
    checkpointer.wait_until_finished()
    if vocab_spec is not None:
        with open(os.path.join(directory, VOCAB_FILE), "w", encoding="utf-8") as f:
            json.dump(vocab_spec, f, ensure_ascii=False)
    with open(os.path.join(directory, "model.gin"), "w") as f:
        f.write(model_gin_text(cfg, directory, source, vocab_spec is not None, note))


def import_checkpoint(source: str):
    """ImportedModel from a .gguf file or an HF checkpoint directory."""
    from codemix.model import gguf_import, hf_io

    if os.path.isdir(source):
        cfg, params = hf_io.import_hf(source)
        spec, problem = hf_vocab_spec(source)
        return gguf_import.ImportedModel(cfg, params, spec, problem, os.path.abspath(source), {})
    return gguf_import.read_gguf(source)


def hf_vocab_spec(source: str) -> tuple[dict | None, str | None]:
    """The vocabulary of an HF dir: our own bpe_vocab.json (exact, written by
    --export_hf) or else tokenizer.json, with special ids from config.json."""
    import json

    from codemix.model.bpe_vocab import BPEVocabularyError, spec_from_hf_tokenizer

    vocab_path = os.path.join(source, VOCAB_FILE)
    if os.path.isfile(vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            return json.load(f), None
    tok_path = os.path.join(source, "tokenizer.json")
    if not os.path.isfile(tok_path):
        return None, f"{source} has no tokenizer.json"
    with open(os.path.join(source, "config.json")) as f:
        hf = json.load(f)
    ids = {k: hf.get(f"{k[:-3]}_token_id") for k in ("bos_id", "eos_id")}
    with open(tok_path, encoding="utf-8") as f:
        try:
            return spec_from_hf_tokenizer(json.load(f), ids, tok_path), None
        except BPEVocabularyError as e:
            return None, str(e)


def load_model_dir(directory: str):
    """(ModelConfig, params, vocab spec or None) of a codemix model directory or
    training workdir (latest checkpoint)."""
    import json

    import orbax.checkpoint as ocp

    import gin
    from codemix import config as codemix_config
    from codemix.model import decoder
    from codemix.model.config import ModelConfig

    directory = os.path.abspath(directory)
    gin_file = next((os.path.join(directory, g) for g in ("model.gin", "operative_config.gin")
                     if os.path.isfile(os.path.join(directory, g))), None)
    if gin_file is None:
        raise FileNotFoundError(f"{directory} has neither model.gin nor operative_config.gin.")
    params_dir = os.path.join(directory, "params")
    if not os.path.isdir(params_dir):
        ckpt = os.path.join(directory, "checkpoints")
        steps = sorted(int(s) for s in os.listdir(ckpt) if s.isdigit()) if os.path.isdir(ckpt) else []
        if not steps:
            raise FileNotFoundError(f"{directory} has no params/ and no checkpoints/<step>/params.")
        params_dir = os.path.join(ckpt, str(steps[-1]), "params")
    gin.clear_config()
    try:
        import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
        codemix_config.parse([gin_file], [f"MODEL_DIR = {directory!r}"], finalize=False)
        cfg = ModelConfig()
    finally:
        gin.clear_config()
    params = ocp.StandardCheckpointer().restore(params_dir, decoder.abstract_params(cfg))
    spec = None
    if os.path.isfile(os.path.join(directory, VOCAB_FILE)):
        with open(os.path.join(directory, VOCAB_FILE), encoding="utf-8") as f:
            spec = json.load(f)
    return cfg, params, spec
