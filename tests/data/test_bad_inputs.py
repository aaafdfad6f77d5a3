"""Every kind of bad input ends in one clear error naming the file, line and fix."""
import collections
import gzip
import json

import pytest

import gin
from codemix.data import readers
from codemix.data.readers import DataError


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_malformed_json_lines_are_counted_then_fatal_over_threshold(tmp_path):
    good = json.dumps({"text": "hello"})
    f = _write(tmp_path / "a.jsonl", [good, "{not json", good, "[1, 2]"])
    counts = collections.Counter()
    rows = list(readers.read_jsonl(f, ["text"], counts, max_bad_lines=5))
    assert [r[1] for r in rows] == [1, 3]
    assert counts["malformed_json"] == 2
    with pytest.raises(DataError, match=r"a\.jsonl:4: malformed JSON.*max_bad_lines=1"):
        list(readers.read_jsonl(f, ["text"], collections.Counter(), max_bad_lines=1))


def test_invalid_utf8_lines_are_counted_then_fatal_naming_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n{not json\n{"text": "end"}\n')
    counts = collections.Counter()
    rows = list(readers.read_jsonl(str(p), ["text"], counts, max_bad_lines=2))
    assert [r[2]["text"] for r in rows] == ["ok", "end"]
    assert counts["invalid_utf8"] == 1 and counts["malformed_json"] == 1
    # Both rules count against the one limit.
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON.*2 unreadable lines.*max_bad_lines=1"):
        list(readers.read_jsonl(str(p), ["text"], collections.Counter(), max_bad_lines=1))
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid UTF-8.*iconv.*max_bad_lines=0"):
        list(readers.read_jsonl(str(p), ["text"], collections.Counter(), max_bad_lines=0))


def test_empty_file_is_an_error(tmp_path):
    p = tmp_path / "empty.jsonl.gz"
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.jsonl\.gz: the file is empty"):
        list(readers.read_jsonl(str(p), ["text"], collections.Counter()))
    q = tmp_path / "empty_inside.jsonl.gz"
    q.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="empty after decompression"):
        list(readers.read_jsonl(str(q), ["text"], collections.Counter()))


def test_glob_with_no_match_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"no files match .*nothing-\*\.jsonl"):
        readers.expand_glob(str(tmp_path / "nothing-*.jsonl"))


def test_missing_field_names_file_line_and_field(tmp_path):
    f = _write(tmp_path / "m.jsonl", [json.dumps({"text": "a", "meta": {}})])
    with pytest.raises(DataError, match=r"m\.jsonl:1: missing field 'meta.redpajama_set_name'"):
        list(readers.read_jsonl(f, ["text", "meta.redpajama_set_name"], collections.Counter()))


def test_unknown_family_is_an_error():
    from codemix.data import corpora

    with pytest.raises(DataError, match=r"unknown data family 'prose'.*text"):
        corpora.builder_class("prose")


def test_unknown_mixture_lists_known_ones():
    import codemix.registry  # noqa: F401
    from codemix.data import mixtures

    with pytest.raises(DataError, match=r"unknown mixture 'balancd'.*balanced"):
        mixtures.get_spec("balancd")


def test_shares_not_summing_to_one_is_an_error():
    import codemix.registry  # noqa: F401
    from codemix.data import mixtures

    gin.parse_config(['lopsided/mixture_spec.shares = {"text": 0.5, "code_web": 0.4}'])
    with pytest.raises(DataError, match=r"shares of mixture 'lopsided' sum to 0.9, not 1"):
        mixtures.get_spec("lopsided")


def test_unknown_family_in_a_mixture_is_an_error():
    import codemix.registry  # noqa: F401
    from codemix.data import mixtures

    gin.parse_config(['typo/mixture_spec.shares = {"text": 0.5, "cod_web": 0.5}'])
    with pytest.raises(DataError, match=r"unknown family \['cod_web'\]"):
        mixtures.get_spec("typo")


def test_raw_path_for_an_unknown_family_is_an_error(tmp_path):
    from codemix.data import corpora, corpus

    options = corpus.CorpusOptions(data_dir=str(tmp_path), raw_paths={"txt": "/data/*.jsonl"})
    with pytest.raises(DataError, match=r"raw_paths names unknown families \['txt'\]"):
        corpora.get_builder("text", options)


def test_eval_limit_below_one_is_refused_before_anything_runs(tmp_path, capsys):
    from codemix.main import main

    for bad in ("0", "-1"):
        with pytest.raises(SystemExit) as e:
            main(["eval", "--checkpoint", str(tmp_path), "--output", str(tmp_path / "r.json"), "--limit", bad])
        assert e.value.code == 2
        assert f"--limit: must be at least 1, got {bad}" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_unknown_mixture_lists_no_eval_benchmarks_and_leaves_no_workdir(tmp_path):
    import subprocess
    import sys

    from tests.train.helpers import REPO, TINY_GIN, env

    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "codemix.main", "train", "--gin_file", TINY_GIN, "--workdir", str(workdir),
         "--gin_param", "make_train_iterator.mixture='balancd'"],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "unknown mixture or task 'balancd'" in proc.stderr and "'balanced'" in proc.stderr
    for benchmark in ("hellaswag", "humaneval", "mbpp", "triviaqa"):
        assert f"'{benchmark}'" not in proc.stderr
    assert not workdir.exists()
