"""The tokenized cache: cached batches equal on-the-fly batches bit for bit
(also after a resume), and a cache of another vocabulary or other corpus
options is refused with the fix named."""
import json
import os

import numpy as np
import pytest

import gin
from codemix.data import beam_cli, cache, corpus, pipeline
from codemix.data.readers import DataError

SEQ = 64


def _iterator(**kw):
    args = {"mixture": "balanced", "sequence_length": SEQ, "batch_size": 4, "seed": 0,
            "process_index": 0, "process_count": 1}
    args.update(kw)
    return pipeline.make_train_iterator(**args)


def _assert_equal(got, want):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.slow
def test_cached_batches_equal_on_the_fly_batches_including_after_resume(data_env, tmp_path):
    from codemix.data import beam_prepare

    root = str(tmp_path / "cache")
    # Two worker processes: they have no gin, so this also checks that the
    # job tokenizes with the vocabulary and corpus options it was given.
    status = beam_cli.cache_mixture("balanced", root, beam_prepare.BeamSettings.local(2))
    assert status == {"text": "cached", "code_web": "cached"}
    for name in status:
        d = cache.task_cache_dir(root, name)
        with open(os.path.join(d, "stats.train.json")) as f:
            assert json.load(f)["examples"] == corpus_documents(name, "train")
        assert os.path.exists(os.path.join(d, "COMPLETED"))

    on_the_fly = _iterator()
    expected = [next(on_the_fly) for _ in range(8)]
    cached = _iterator(cache_dir=root)
    for want in expected[:4]:
        _assert_equal(next(cached), want)
    cached.save(str(tmp_path / "state"))
    resumed = _iterator(cache_dir=root)
    resumed.restore(str(tmp_path / "state"))
    for want in expected[4:]:
        _assert_equal(next(resumed), want)
    # A second cache run finds the cache up to date and leaves it alone.
    assert beam_cli.cache_mixture("balanced", root, beam_prepare.BeamSettings()) == {
        "text": "up to date", "code_web": "up to date"}


def corpus_documents(name, split):
    from codemix.data import corpora

    return corpora.stats(cache.TASKS[name].family)["documents"][split]


def _fake_cache(root, name, vocab_file, options, **changes):
    """A finished task cache holding only its fingerprint (read before any data)."""
    d = cache.task_cache_dir(root, name)
    os.makedirs(d)
    with open(os.path.join(d, cache.FINGERPRINT_FILE), "w") as f:
        json.dump({**cache.fingerprint(name, vocab_file, options), **changes}, f)
    open(os.path.join(d, "COMPLETED"), "w").close()


def test_cache_of_another_vocabulary_is_refused_naming_the_fix(data_env, tmp_path):
    vocab_file = pipeline.data_vocabulary("balanced").sentencepiece_model_file
    root = str(tmp_path / "cache")
    _fake_cache(root, "text", vocab_file, corpus.CorpusOptions(), vocabulary_sha256="0" * 64)
    with pytest.raises(DataError, match="task 'text'.*another vocabulary.*codemix data cache --mixture"):
        _iterator(cache_dir=root)


def test_cache_of_other_corpus_options_is_refused(data_env, tmp_path):
    vocab_file = pipeline.data_vocabulary("balanced").sentencepiece_model_file
    root = str(tmp_path / "cache")
    _fake_cache(root, "code_web", vocab_file, corpus.CorpusOptions())
    cache.check_fingerprint(root, "code_web", vocab_file, corpus.CorpusOptions())  # same options: accepted
    with gin.unlock_config():
        gin.bind_parameter("CorpusOptions.validation_fraction", 0.2)
    with pytest.raises(DataError, match="task 'code_web'.*other corpus options.*--overwrite"):
        _iterator(cache_dir=root)


def test_cache_without_fingerprint_is_refused(data_env, tmp_path):
    root = str(tmp_path / "cache")
    d = cache.task_cache_dir(root, "text")
    os.makedirs(d)
    open(os.path.join(d, "COMPLETED"), "w").close()
    with pytest.raises(DataError, match="no codemix_fingerprint.json"):
        _iterator(cache_dir=root)


def test_only_family_tasks_are_cached():
    with pytest.raises(DataError, match="only family tasks"):
        cache.fingerprint("arc_easy", "unused", corpus.CorpusOptions())
