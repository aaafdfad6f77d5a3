"""Load a model for evaluation: config, weights, vocabulary, run name and step.

`load_model_for_eval(DIR)` accepts two kinds of directory:

1. A training workdir (it has `operative_config.gin`): the model config is
   the run's `ModelConfig.*` bindings, the weights are its latest checkpoint
   (`checkpoints/<step>/params`), and the vocabulary is that of the run's data:
   the `targets` feature of the SeqIO task/mixture bound to
   `make_train_iterator.mixture`, unless `eval_vocabulary` is bound (below).

2. An imported (or exported) model directory:

       DIR/model.gin   ModelConfig.* bindings, plus the vocabulary binding
       DIR/params/     Orbax PyTree of the parameters (as in checkpoints)

   CONVENTION for the vocabulary of such a directory: `model.gin` binds
   `eval_vocabulary`, either to a SeqIO task whose `targets` vocabulary to use

       eval_vocabulary.task = 'local_text'

   or directly to any gin-configurable `seqio.Vocabulary`:

       import codemix.model.import_gguf        # whatever registers the class
       eval_vocabulary.vocabulary = @GGUFVocabulary()
       GGUFVocabulary.path = '%MODEL_DIR/tokenizer.json'

   `seqio.ByteVocabulary` and `seqio.SentencePieceVocabulary` are registered
   here (`@seqio.ByteVocabulary()`, `seqio.SentencePieceVocabulary.
   sentencepiece_model_file = ...`). The macro `MODEL_DIR` is bound to DIR
   while parsing, so files inside DIR can be named as `%MODEL_DIR/...`.
   Optional `DIR/run_info.json` {"run": ..., "step": ...} names the results.

Parsing uses gin in isolation: the global gin config is cleared before and
after, so call this outside a gin-configured run (the trainer hook does not
use it; it takes the live run's params and vocabulary).
"""
from __future__ import annotations

import dataclasses
import json
import logging

import gin
import jax
import seqio

import codemix.registry  # noqa: F401  (a run's gin names configurables from all of codemix)
from codemix import config as codemix_config
from codemix.eval import mesh as eval_mesh
from codemix.model import decoder
from codemix.model.config import ModelConfig
from codemix.train import checkpointing
from codemix.eval.vocabulary import eval_vocabulary, run_vocabulary  # noqa: F401  (eval_vocabulary: see above)

log = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class RunInfo:
    """Where evaluated weights came from: names the rows of results.json."""

    run: str
    step: int
    path: str


def single_device_shardings(abstract: dict):
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda _: sharding, abstract)


def load_model_for_eval(directory: str, step: int | None = None) -> tuple[ModelConfig, dict, seqio.Vocabulary, RunInfo]:
    """(model config, params, vocabulary, run info) for DIR; the params are
    sharded over all devices like in training (codemix/eval/mesh.py), or on the
    one device there is.

    `step` picks a checkpoint of a training workdir (default: the latest).
    """
    from codemix import storage

    storage.check(directory)  # a gs:// bucket that can't be used: one StorageError
    directory = checkpointing.absolute(directory)  # a URL stays a URL
    root = storage.path(directory)
    workdir_gin = str(root / "operative_config.gin")
    model_gin = str(root / "model.gin")
    if (root / "operative_config.gin").is_file():
        gin_file, kind = workdir_gin, "workdir"
    elif (root / "model.gin").is_file() and (root / "params").is_dir():
        gin_file, kind = model_gin, "imported"
    else:
        raise FileNotFoundError(
            f"{directory} is neither a training workdir (no operative_config.gin) nor a model "
            f"directory (model.gin + params/); pass `codemix train --workdir` output or an "
            f"imported model's directory."
        )
    gin.clear_config()
    try:
        codemix_config.parse([gin_file], [f"MODEL_DIR = {directory!r}"], finalize=False)
        cfg = ModelConfig()
        mesh = eval_mesh.eval_mesh()  # the run's make_mesh sizes, while its gin is parsed
        vocab = run_vocabulary(gin_file, from_data=kind == "workdir")
    finally:
        gin.clear_config()
    if vocab.vocab_size > cfg.vocab_size:
        raise ValueError(
            f"vocabulary has {vocab.vocab_size} ids but the model's vocab_size is {cfg.vocab_size}; "
            f"the vocabulary binding in {gin_file} does not belong to this model."
        )
    abstract = decoder.abstract_params(cfg)
    params, src_step = checkpointing.load_params(directory, abstract,
                                                 eval_mesh.param_shardings(cfg, mesh), step)
    run, info_step = root.name, src_step
    info_path = root / "run_info.json"
    if info_path.is_file():
        meta = json.loads(info_path.read_text())
        run, info_step = meta.get("run", run), int(meta.get("step", info_step))
    log.info("loaded %s (%s, step %d; model vocab_size %d; vocabulary %s with %d ids)", directory,
             kind, info_step, cfg.vocab_size, type(vocab).__name__, vocab.vocab_size)
    return cfg, params, vocab, RunInfo(run=run, step=info_step, path=directory)


def heldout_context(directory: str) -> tuple[dict, int | None]:
    """({family: held-out documents}, the run's sequence length or None) for DIR.

    The documents are selected under DIR's own gin config (a workdir's
    HeldOutOptions, CorpusOptions and VocabOptions), so `codemix eval
    --category perplexity` measures exactly the sets the train loop measured.
    """
    from codemix import storage
    from codemix.data import heldout

    directory = checkpointing.absolute(directory)
    gin_file = storage.path(directory, "operative_config.gin")
    if not gin_file.is_file():
        gin_file = storage.path(directory, "model.gin")
    gin.clear_config()
    try:
        if gin_file.is_file():
            codemix_config.parse([str(gin_file)], [f"MODEL_DIR = {directory!r}"], finalize=False)
        docs = heldout.documents()
        seq_len = codemix_config.query("make_train_iterator.sequence_length")
    finally:
        gin.clear_config()
    return docs, (int(seq_len) if seq_len is not None else None)
