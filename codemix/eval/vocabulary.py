"""The vocabulary evaluation tokenizes with: the run's data's, or `eval_vocabulary`.

`eval_vocabulary` is the gin configurable an imported model's `model.gin`
binds (codemix/eval/loading.py describes the convention); without it, a run
is evaluated with the vocabulary of its data, which
codemix.data.pipeline.data_vocabulary resolves. Kept apart from loading.py,
which parses run configs, so that codemix/registry.py can register this
configurable without importing the loader.
"""
from __future__ import annotations

import gin
import seqio

from codemix import config as codemix_config

# So a model.gin can bind `eval_vocabulary.vocabulary = @seqio.SentencePieceVocabulary()`.
for _cls in (seqio.ByteVocabulary, seqio.SentencePieceVocabulary):
    try:
        gin.external_configurable(_cls, module="seqio")
    except ValueError:  # already registered (module re-import)
        pass


@gin.configurable
def eval_vocabulary(vocabulary: seqio.Vocabulary | None = None, task: str | None = None) -> seqio.Vocabulary | None:
    """The vocabulary evaluation tokenizes with, when it is not the run's data's.

    Args:
      vocabulary: a seqio.Vocabulary (gin reference); wins over `task`.
      task: a SeqIO task or mixture name whose `targets` vocabulary to use.
    Returns None when neither is bound.
    """
    if vocabulary is not None:
        return vocabulary
    if task is not None:
        from codemix.data import pipeline

        return pipeline.data_vocabulary(task)
    return None


def run_vocabulary(where: str, from_data: bool = True) -> seqio.Vocabulary:
    """The vocabulary to evaluate the parsed run's model with: `eval_vocabulary`
    if bound, else (`from_data`) that of the run's data,
    `make_train_iterator.mixture` (codemix.data.pipeline.data_vocabulary).
    Call it while the run's gin config is parsed; `where` names that config
    in the error when neither is bound."""
    vocab = eval_vocabulary()
    if vocab is not None:
        return vocab
    mixture = codemix_config.query("make_train_iterator.mixture") if from_data else None
    if mixture is None:
        raise codemix_config.ConfigError(
            f"{where} binds neither make_train_iterator.mixture (the run's data) nor eval_vocabulary, so "
            f"the vocabulary is unknown; bind eval_vocabulary.task = '<seqio task>' or "
            f"eval_vocabulary.vocabulary = @<Vocabulary>() (see codemix/eval/loading.py)."
        )
    from codemix.data import pipeline

    return pipeline.data_vocabulary(mixture)
