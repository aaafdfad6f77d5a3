"""The tokenized cache: written in shards in an order independent of the
number of Beam workers, cached batches equal on-the-fly batches bit for bit
(also after a resume, and read by 4 readers), and a cache of another
vocabulary or other corpus options, or with a missing, extra or foreign
shard, is refused with the fix named."""
import json
import os
from pathlib import Path

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


SHARDS = 8
UNIT = 7  # raw documents per Beam work item: several items per split, so the workers share them


def _shard_bytes(root, name):
    """Each split's shard files' bytes in shard order (the write id in their names left out)."""
    d = cache.task_cache_dir(root, name)
    out = {}
    for split in cache.SPLITS:
        with open(cache.manifest_path(root, name, split)) as f:
            manifest = json.load(f)
        assert manifest["num_shards"] == SHARDS
        out[split] = [Path(d, e["file"]).read_bytes() for e in manifest["shards"]]
    return out


@pytest.mark.slow
def test_cache_by_one_or_four_workers_is_the_same_and_reads_as_the_on_the_fly_batches(data_env, tmp_path):
    from codemix.data import beam_prepare

    one, four = str(tmp_path / "one"), str(tmp_path / "four")
    # Four worker processes: they have no gin, so this also checks that the
    # job tokenizes with the vocabulary and corpus options it was given.
    status = beam_cli.cache_mixture("balanced", four, beam_prepare.BeamSettings.local(4), num_shards=SHARDS,
                                    unit_documents=UNIT)
    assert status == {"text": "cached", "code_web": "cached"}
    assert beam_cli.cache_mixture("code_web", one, beam_prepare.BeamSettings(), num_shards=SHARDS,
                                  unit_documents=UNIT) == {"code_web": "cached"}
    # The same bytes shard by shard, whatever the number of workers.
    written = _shard_bytes(four, "code_web")
    assert written == _shard_bytes(one, "code_web")
    assert sum(len(b) > 0 for b in written["train"]) == SHARDS
    for name in status:
        d = cache.task_cache_dir(four, name)
        with open(os.path.join(d, "stats.train.json")) as f:
            assert json.load(f)["examples"] == corpus_documents(name, "train")
        with open(cache.manifest_path(four, name, "train")) as f:
            assert json.load(f)["documents"] == corpus_documents(name, "train")
        assert os.path.exists(os.path.join(d, "COMPLETED"))

    on_the_fly = _iterator(batch_size=8)
    assert on_the_fly.lanes == 4  # 4 readers over 8 shards: 2 shards each
    expected = [next(on_the_fly) for _ in range(8)]
    cached = _iterator(batch_size=8, cache_dir=four)
    for want in expected[:4]:
        _assert_equal(next(cached), want)
    cached.save(str(tmp_path / "state"))
    resumed = _iterator(batch_size=8, cache_dir=four)
    resumed.restore(str(tmp_path / "state"))
    for want in expected[4:]:
        _assert_equal(next(resumed), want)
    # Each of 4 readers reads only its own shards (disjoint, together all of
    # them) and yields its rows of the one-reader batches.
    files = [cache.lane_files(four, "code_web", "train", lane, 4) for lane in range(4)]
    every = [f for lane in files for f in lane]
    assert sorted(every) == sorted(os.path.join(cache.task_cache_dir(four, "code_web"), e)
                                            for e in os.listdir(cache.task_cache_dir(four, "code_web"))
                                            if e.startswith("train.tfrecord-"))
    assert all(len(f) == 2 for f in files) and len(set(every)) == SHARDS
    readers = [_iterator(batch_size=8, cache_dir=four, process_index=h, process_count=4) for h in range(4)]
    for want in expected[:3]:
        parts = [next(r) for r in readers]
        _assert_equal({k: np.concatenate([p[k] for p in parts]) for k in want}, want)
    # A second cache run finds the cache up to date and leaves it alone.
    assert beam_cli.cache_mixture("balanced", four, beam_prepare.BeamSettings()) == {
        "text": "up to date", "code_web": "up to date"}


@pytest.mark.slow
def test_missing_extra_or_foreign_shards_are_refused_by_name(data_env, tmp_path):
    from codemix.data import beam_prepare

    first = str(tmp_path / "first")
    beam_cli.cache_mixture("code_synthetic", first, beam_prepare.BeamSettings(), num_shards=4)
    d = cache.task_cache_dir(first, "code_synthetic")
    with open(cache.manifest_path(first, "code_synthetic", "train")) as f:
        manifest = json.load(f)
    shards = [e["file"] for e in manifest["shards"]]
    # Shard 1 as another write of the cache names it (its write id in the name).
    foreign = shards[1].replace(manifest["write_id"], "0badf00d")
    cache.check_shards(first, "code_synthetic", "train")  # complete: accepted
    with pytest.raises(DataError, match="4 shards, which 3 data lanes can't split evenly"):
        cache.lane_files(first, "code_synthetic", "train", 0, 3)

    os.rename(os.path.join(d, shards[1]), tmp_path / "aside")
    with pytest.raises(DataError, match=f"{shards[1]}: shard 1 of 4 of task 'code_synthetic' is missing"):
        _iterator(mixture="code_synthetic", cache_dir=first)
    # The same shard from another write of the cache: refused, naming it.
    os.link(tmp_path / "aside", os.path.join(d, foreign))
    with pytest.raises(DataError, match=f"{foreign}: a shard of another write of the cache"):
        cache.check_shards(first, "code_synthetic", "train")
    os.remove(os.path.join(d, foreign))
    os.rename(tmp_path / "aside", os.path.join(d, shards[1]))
    extra = shards[0].replace("-00000-of-00004", "-00004-of-00004")
    open(os.path.join(d, extra), "wb").close()
    with pytest.raises(DataError, match=f"{extra}: an extra shard: shards.train.json lists 4"):
        cache.check_shards(first, "code_synthetic", "train")
    os.remove(os.path.join(d, extra))
    with open(os.path.join(d, shards[2]), "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError, match=f"{shards[2]}: .* bytes where shards.train.json records"):
        cache.check_shards(first, "code_synthetic", "train")


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
