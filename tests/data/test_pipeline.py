"""Token-exact mixing, resume, host sharding and share schedules (data lanes and
resume with another process count: test_data_position.py)."""
import json

import numpy as np
import pytest

from codemix.data import pipeline

SEQ = 64


def _iterator(mixture, **kw):
    args = {"mixture": mixture, "sequence_length": SEQ, "batch_size": 4, "seed": 0,
            "process_index": 0, "process_count": 1}
    args.update(kw)
    return pipeline.make_train_iterator(**args)


def _shares(it, batches):
    tokens = np.zeros(len(it.source_names))
    for _ in range(batches):
        b = next(it)
        np.add.at(tokens, b["source_id"], b["decoder_loss_weights"].sum(axis=1))
    return tokens / tokens.sum()


def test_realized_token_shares_within_one_percent_over_1000_batches(data_env):
    it = _iterator("quality_synthetic")
    realized = _shares(it, 1000)
    requested = np.asarray(it.rates)
    assert it.source_names == ["text", "code_web", "markup", "code_adjacent", "code_synthetic"]
    assert np.max(np.abs(realized - requested)) <= 0.01


def test_iterator_records_the_corpora_it_reads(data_env):
    from codemix.data import corpora, corpus

    it = _iterator("quality_synthetic")
    assert it.corpora == corpora.provenance(it.source_names)
    assert set(it.corpora) == set(it.source_names)
    for family, record in it.corpora.items():
        assert record["fingerprint"] == corpora.stats(family, corpus.CorpusOptions())["fingerprint"]
        assert all(s["version"] for s in record["sources"] if not s["name"].startswith("debian:"))


def test_rows_are_fully_packed_with_consistent_features(data_env):
    b = next(_iterator("balanced"))
    assert b["decoder_target_tokens"].shape == (4, SEQ)
    assert np.all(b["decoder_target_tokens"] > 0)  # no padding anywhere
    assert np.all(b["decoder_loss_weights"] == 1.0)
    starts = b["decoder_positions"] == 0
    assert np.all(b["decoder_input_tokens"][starts] == 0)
    np.testing.assert_array_equal(b["decoder_input_tokens"][:, 1:][~starts[:, 1:]],
                                  b["decoder_target_tokens"][:, :-1][~starts[:, 1:]])
    assert np.all(np.diff(b["decoder_segment_ids"], axis=1) >= 0)
    assert b["source_id"].dtype == np.int32 and b["epoch"].dtype == np.int32


def test_same_seed_gives_same_batches_and_another_seed_does_not(data_env):
    a, b, c = _iterator("balanced"), _iterator("balanced"), _iterator("balanced", seed=1)
    for _ in range(3):
        x, y, z = next(a), next(b), next(c)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(x["decoder_target_tokens"], z["decoder_target_tokens"])


def test_resume_reproduces_batches(data_env, tmp_path):
    it = _iterator("balanced")
    for _ in range(5):
        next(it)
    it.save(str(tmp_path / "state"))
    expected = [next(it) for _ in range(4)]
    fresh = _iterator("balanced")
    fresh.restore(str(tmp_path / "state"))
    for want in expected:
        got = next(fresh)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_exhausted_family_repeats_and_is_counted(data_env):
    it = _iterator("cooldown_without_code", sequence_length=512, batch_size=8)
    epochs = {0: set(), 1: set()}
    for _ in range(60):
        b = next(it)
        for s, e in zip(b["source_id"], b["epoch"]):
            epochs.setdefault(int(s), set()).add(int(e))
    assert it.source_names == ["text", "text_hq"]
    assert max(epochs[1]) >= 1  # text_hq (small) ran out and was repeated, with its pass number


def test_host_shards_are_disjoint_and_cover_the_data(data_env):
    import seqio

    from codemix.data import tasks

    tasks.ensure_registered("code_synthetic")

    def docs(shard):
        ds = pipeline._task_documents("code_synthetic", "validation", shard)
        return [tuple(x["targets"].tolist()) for x in ds.as_numpy_iterator()]

    everything = docs(None)
    parts = [docs(seqio.ShardInfo(index=i, num_shards=2)) for i in range(2)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(everything)


def test_share_schedule_switches_at_the_given_step(data_env):
    import gin

    gin.parse_config(['switch/mixture_spec.shares = {"text": 0.5, "code_web": 0.5}',
                      'switch/mixture_spec.schedule = [(3, {"text": 1.0})]'])
    it = _iterator("switch", batch_size=4)
    ids = [next(it)["source_id"].tolist() for _ in range(6)]
    assert all(sorted(s) == [0, 0, 1, 1] for s in ids[:3])
    assert all(s == [0, 0, 0, 0] for s in ids[3:])
    assert it.rates_at(2) == [0.5, 0.5] and it.rates_at(3) == [1.0, 0.0]


def test_local_text_byte_task_still_works():
    it = pipeline.make_train_iterator(mixture="local_text", sequence_length=SEQ, batch_size=2,
                                      process_index=0, process_count=1)
    b = next(it)
    assert it.vocab_size == 259 and b["decoder_target_tokens"].shape == (2, SEQ)


def test_inspect_reports_requested_and_realized_shares(data_env, capsys):
    from tests.data.cli_helper import main

    params = [f"--gin_param=CorpusOptions.data_dir='{data_env / 'tfds'}'",
              f"--gin_param=VocabOptions.cache_dir='{data_env / 'vocab'}'",
              "--gin_param=CorpusOptions.local_max_bytes=300000", "--gin_param=VocabOptions.size=1024",
              "--gin_param=VocabOptions.sample_bytes=400000"]
    rc = main(["data", "inspect", "code_p25", "--batches", "200", "--sequence_length", "64", "--json"] + params)
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    shares = {s["task"]: (s["requested_share"], s["realized_share"]) for s in report["sources"]}
    assert shares == {"text": (0.75, 0.75), "code_web": (0.25, 0.25)}
    assert all(s["sample_documents"] for s in report["sources"])
    # The code_web corpus is the declared sources' files (~11 KB each, ~3000 tokens), whatever else is
    # installed: 25,600 code tokens in 200 batches end about nine (50 batches ended two).
    assert report["sources"][1]["tokens_per_document"] > 0
    assert set(report["corpora"]) == {"text", "code_web"}
    web = report["corpora"]["code_web"]
    assert [s["name"] for s in web["sources"]][:2] == ["python-stdlib", "gensim"] and web["fingerprint"]


def test_unknown_mixture_from_the_command_line_is_one_clear_error(data_env, capsys):
    from tests.data.cli_helper import main

    assert main(["data", "inspect", "no_such_mixture", "--batches", "1"]) == 2
    assert "unknown mixture or task 'no_such_mixture'" in capsys.readouterr().err


def _argmax_pattern(rates, length):
    """The largest-deficit rule written directly with numpy's argmax."""
    rates = np.asarray(rates, dtype=np.float64)
    rates = rates / rates.sum()
    counts = np.zeros(len(rates))
    out = np.empty(length, dtype=np.int64)
    for r in range(length):
        k = int(np.argmax(rates * (r + 1) - counts))
        out[r] = k
        counts[k] += 1
    return out


@pytest.mark.parametrize("rates", [[0.75, 0.25], [1, 1, 1], [0.5, 0.3, 0.2, 0.0], [0.1] * 7 + [0.3],
                                   [3.7, 1.1, 0.4, 2.2, 0.9, 5.0]])
def test_choice_pattern_is_the_largest_deficit_rule_with_first_index_ties(rates):
    got = pipeline.choice_pattern(rates, 5000)
    np.testing.assert_array_equal(got, _argmax_pattern(rates, 5000))
    shares = np.asarray(rates, float) / np.sum(rates)
    np.testing.assert_allclose(np.bincount(got, minlength=len(rates)) / 5000, shares, atol=1 / 5000 * len(rates))
    got[0] = 99  # callers get their own copy of the memoized pattern
    assert pipeline.choice_pattern(rates, 5000)[0] != 99
