"""The data position is global: lanes make the global batches independent of
the process count, so a position saved by 2 processes resumes on 1 or 4 with
the batches the uninterrupted run would have had; a position that doesn't fit
the corpus is refused with what differs."""
import json

import numpy as np
import pytest

from codemix.data import pipeline
from codemix.data.readers import DataError

SEQ = 64
BATCH = 8


def _iterator(process_index=0, process_count=1, **kw):
    args = {"mixture": "balanced", "sequence_length": SEQ, "batch_size": BATCH, "seed": 0,
            "process_index": process_index, "process_count": process_count,
            "shuffle_buffer": 32}  # a small window: the first rows need one window tokenized per lane
    args.update(kw)
    return pipeline.make_train_iterator(**args)


def _global(iterators):
    """One global batch: each process's rows in process order."""
    parts = [next(it) for it in iterators]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _assert_equal(got, want):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_four_readers_own_disjoint_lanes_and_yield_their_rows_of_one_reader(data_env):
    one = _iterator()
    # The text family has 5 local documents, so the default 8 lanes halve to 4.
    assert one.lanes == 4 and one.own_lanes == [0, 1, 2, 3]
    readers = [_iterator(h, 4) for h in range(4)]
    assert [r.own_lanes for r in readers] == [[0], [1], [2], [3]]
    assert all(r.local_batch_size == 2 for r in readers)
    for _ in range(6):
        _assert_equal(_global(readers), next(one))


def test_lanes_read_disjoint_documents_that_cover_the_split(data_env):
    import seqio

    from codemix.data import tasks

    tasks.ensure_registered("code_web")

    def docs(shard):
        ds = pipeline._task_documents("code_web", "train", shard)
        return [tuple(x["targets"].tolist()) for x in ds.as_numpy_iterator()]

    everything = docs(None)
    lanes = [docs(seqio.ShardInfo(index=i, num_shards=4)) for i in range(4)]
    for i, lane in enumerate(lanes):
        assert lane == everything[i::4]  # document d goes to lane d mod 4, in order
    assert sorted(d for lane in lanes for d in lane) == sorted(everything)


def test_position_saved_by_two_processes_resumes_on_one_and_on_four(data_env, tmp_path):
    uninterrupted = _iterator()
    expected = [next(uninterrupted) for _ in range(7)]
    two = [_iterator(h, 2) for h in range(2)]
    for want in expected[:4]:
        _assert_equal(_global(two), want)
    for it in two:  # each process writes its lanes, process 0 the position
        it.save(str(tmp_path / "data"))
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "lane_00000", "lane_00001", "lane_00002", "lane_00003", "position.json"]
    position = json.loads((tmp_path / "data" / "position.json").read_text())
    assert position["step"] == 4 and position["lanes"] == 4
    # balanced is 50/50: 4 batches of 8 rows are 16 rows of each source.
    assert position["rows_per_source"] == [16, 16]
    for processes in (1, 4):
        resumed = [_iterator(h, processes) for h in range(processes)]
        for it in resumed:
            it.restore(str(tmp_path / "data"))
            assert it.step == 4
        for want in expected[4:]:
            _assert_equal(_global(resumed), want)


def test_rows_per_source_counts_the_global_pattern_across_a_schedule(data_env):
    import gin

    gin.parse_config(['pos_switch/mixture_spec.shares = {"text": 0.25, "code_web": 0.75}',
                      'pos_switch/mixture_spec.schedule = [(3, {"text": 1.0})]'])
    it = _iterator(mixture="pos_switch", pattern_length=7)  # a short period: whole periods plus a rest
    seen = np.zeros(2, dtype=int)
    for step in range(1, 7):
        np.add.at(seen, next(it)["source_id"], 1)
        assert it.position()["rows_per_source"] == seen.tolist(), step
    # 24 rows at 25/75 (each within one row of its share), then 24 of text only.
    assert seen.sum() == 48 and abs(seen[1] - 18) <= 1 and seen[0] == 48 - seen[1]


def _saved_position(tmp_path):
    it = _iterator(mixture="text", lanes=2)
    next(it)
    it.save(str(tmp_path / "data"))
    return json.loads((tmp_path / "data" / "position.json").read_text())


def test_resume_on_another_corpus_is_refused_naming_the_fingerprint(data_env, tmp_path):
    saved = _saved_position(tmp_path)
    saved["corpora"]["text"]["fingerprint"] = "0123abcd"
    with pytest.raises(DataError, match="another corpus of task 'text'.*0123abcd.*train.init_from"):
        _iterator(mixture="text", lanes=2).check_position(saved, "ckpt/data")


def test_resume_on_fewer_documents_than_the_position_counts_is_refused(data_env, tmp_path):
    saved = _saved_position(tmp_path)
    had = saved["corpora"]["text"]["documents"] + 100
    saved["corpora"]["text"]["documents"] = had
    with pytest.raises(DataError, match=f"taken on {had} documents of task 'text', the corpus now has "
                                        f"{had - 100}"):
        _iterator(mixture="text", lanes=2).check_position(saved, "ckpt/data")


def test_resume_with_other_lanes_or_batch_is_refused(data_env, tmp_path):
    saved = _saved_position(tmp_path)
    with pytest.raises(DataError, match=r"number of lanes \(make_train_iterator.lanes\) 2, this run has 1"):
        _iterator(mixture="text", lanes=1).check_position(saved, "ckpt/data")
    (tmp_path / "data" / "position.json").write_text(json.dumps({**saved, "global_batch_size": 16}))
    with pytest.raises(DataError, match="global batch size 16, this run has 8"):
        _iterator(mixture="text", lanes=2).restore(str(tmp_path / "data"))


def test_lanes_that_do_not_divide_the_batch_or_the_processes_are_refused(data_env):
    with pytest.raises(ValueError, match="lanes=3 does not divide batch_size=8"):
        _iterator(lanes=3)
    with pytest.raises(ValueError, match="3 processes can't share make_train_iterator.lanes=4"):
        pipeline.make_train_iterator(mixture="local_text", sequence_length=SEQ, batch_size=12, lanes=4,
                                     process_index=0, process_count=3)
