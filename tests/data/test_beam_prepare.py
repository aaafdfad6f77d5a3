"""Full corpora prepared on Beam equal the in-process reference (generated fixtures)."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds

from codemix.data import beam_prepare, corpora, corpus
from codemix.data.readers import DataError
from tests.data import beam_fixture


def _reference(family, raw, tmp_path, **kw):
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "ref"), raw_paths={family: raw}, **kw)
    return corpora.get_builder(family, options).collect()


def _on_beam(family, raw, tmp_path, settings, **kw):
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "beam"), raw_paths={family: raw}, **kw)
    builder = beam_prepare.prepare(family, options, settings)
    docs = {split: sorted((corpus.text_hash(ex["text"].decode()), ex["path"].decode())
                          for ex in tfds.as_numpy(builder.as_dataset(split=split)))
            for split in ("train", "validation")}
    return docs, builder.info.metadata["stats"]


def _by_hash(docs):
    return {split: sorted((corpus.text_hash(d.text), d.path) for d in v) for split, v in docs.items()}


def _same_stats(beam_stats, ref_stats):
    for key in ("dropped", "documents", "bytes", "by_language", "documents_read"):
        assert beam_stats[key] == ref_stats[key], key


@pytest.mark.slow
def test_slimpajama_on_two_beam_workers_equals_in_process(tmp_path):
    planted = beam_fixture.slimpajama(tmp_path / "sp", shards=40, per_shard=12)
    raw = str(tmp_path / "sp" / "*.jsonl.zst")
    ref_docs, ref_stats = _reference("text", raw, tmp_path, max_bad_files=1)
    docs, stats = _on_beam("text", raw, tmp_path, beam_prepare.BeamSettings.local(2), max_bad_files=1)
    assert docs == _by_hash(ref_docs)  # same documents, same representative of each duplicate, same splits
    _same_stats(stats, ref_stats)
    dropped = stats["dropped"]
    assert dropped["malformed_json"] == planted["malformed"] == 8
    assert dropped["invalid_utf8"] == planted["invalid_utf8"] == 4
    assert dropped["removed_set:RedPajamaGithub"] == dropped["removed_set:RedPajamaStackExchange"] == 40
    assert dropped["code_detector"] == 40
    assert 39 <= dropped["empty"] <= 40  # the corrupt shard's lost tail may hold its empty record
    assert 0 < dropped["exact_duplicate"] <= planted["duplicates"]
    assert dropped["damaged_compressed_files"] == 1 and dropped["records_lost_in_damaged_files"] >= 1
    assert stats["problem_files"][str(tmp_path / "sp" / "chunk_0007.jsonl.zst")]["damaged_compressed_files"] == 1
    assert stats["documents"]["validation"] >= 1 and stats["documents"]["train"] > 300


@pytest.mark.slow
def test_stack_parquet_on_beam_equals_in_process(tmp_path):
    beam_fixture.stack(tmp_path / "stack", files_per_language=2, rows=15)
    raw = str(tmp_path / "stack")
    ref_docs, ref_stats = _reference("code_web", raw, tmp_path)
    docs, stats = _on_beam("code_web", raw, tmp_path, beam_prepare.BeamSettings())
    assert docs == _by_hash(ref_docs)
    _same_stats(stats, ref_stats)
    assert stats["dropped"]["null_content"] == 6  # one per file, 3 languages x 2 files
    assert stats["dropped"]["exact_duplicate"] == 3  # the shared header, once per language's second file
    assert stats["dropped"]["language_not_in_study:klingon"] == 1
    assert set(stats["by_language"]) == {"python", "rust", "java"}


def test_damage_over_the_limits_is_one_error_naming_the_file_in_read_order():
    options = corpus.CorpusOptions(max_bad_lines=2, max_bad_files=0)
    reports = [
        {"index": 5, "file": "b.jsonl.zst", "counts": {"malformed_json": 2}, "error": None},
        {"index": 1, "file": "a.jsonl.zst", "counts": {"malformed_json": 1}, "error": None},
        {"index": 9, "file": "c.jsonl.zst", "counts": {}, "error": "c.jsonl.zst:3: invalid UTF-8 at byte 4"},
    ]
    with pytest.raises(DataError, match=r"^b\.jsonl\.zst: 2 malformed JSON or invalid UTF-8 .* 3 unreadable lines .* max_bad_lines=2"):
        beam_prepare.check_reports(reports, options)
    with pytest.raises(DataError, match="invalid UTF-8"):
        beam_prepare.check_reports(reports, corpus.CorpusOptions(max_bad_lines=10))
    damaged = [{"index": 0, "file": "d.zst", "counts": {"damaged_compressed_files": 1,
                                                        "records_lost_in_damaged_files": 4}, "error": None}]
    with pytest.raises(DataError, match=r"^d\.zst: truncated or corrupt .*~4 records lost.*max_bad_files=0"):
        beam_prepare.check_reports(damaged, options)
    beam_prepare.check_reports(damaged, corpus.CorpusOptions(max_bad_files=1))  # within the limit


@pytest.mark.slow
def test_parquet_without_the_column_fails_the_beam_run_naming_the_file(tmp_path):
    beam_fixture.stack(tmp_path / "stack", files_per_language=1, rows=5)
    bad = tmp_path / "stack" / "python" / "data-00009.parquet"
    pq.write_table(pa.table({"text": ["print(1)\n"]}), bad)
    with pytest.raises(DataError, match=rf"{bad}: missing column\(s\) \['content'\]"):
        _reference("code_web", str(tmp_path / "stack"), tmp_path)
    with pytest.raises(DataError, match=rf"{bad}: missing column\(s\) \['content'\]"):
        _on_beam("code_web", str(tmp_path / "stack"), tmp_path, beam_prepare.BeamSettings())


def test_beam_options_parse_and_bad_items_are_named():
    s = beam_prepare.settings_for("DataflowRunner", "project=p, region=us-central1,--temp_location=gs://b/t")
    assert s.args() == ["--runner=DataflowRunner", "--project=p", "--region=us-central1", "--temp_location=gs://b/t"]
    assert beam_prepare.BeamSettings.local(2).args() == [
        "--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    with pytest.raises(DataError, match="'region' is not key=value"):
        beam_prepare.parse_options("project=p,region")
    with pytest.raises(DataError, match="unknown --beam_runner 'Dataflow'"):
        beam_prepare.settings_for("Dataflow")


def test_dry_run_prints_options_and_the_submit_command_without_listing_files():
    import argparse

    from codemix.data import beam_cli

    p = argparse.ArgumentParser()
    p.add_argument("--family", action="append")
    beam_cli.add_prepare_arguments(p)
    argv = ["data", "prepare", "--family", "text", "--raw_path", "text=gs://b/sp/*.jsonl.zst",
            "--beam_runner", "DataflowRunner", "--beam_options", "project=p,region=r,temp_location=gs://b/t",
            "--dry_run"]
    text = beam_cli.prepare(p.parse_args(argv[2:]), argv)  # gs:// is never touched: no network here
    assert "  --runner=DataflowRunner\n  --project=p\n  --region=r\n  --temp_location=gs://b/t" in text
    assert "requirements_file" in text and "CorpusOptions.data_dir to a gs:// path" in text
    assert text.endswith("codemix data prepare --family text --raw_path 'text=gs://b/sp/*.jsonl.zst' "
                         "--beam_runner DataflowRunner --beam_options project=p,region=r,temp_location=gs://b/t")


def test_data_prepare_command_prints_the_dataflow_dry_run(monkeypatch, capsys):
    from tests.data import cli_helper

    argv = ["data", "prepare", "--family", "code_web", "--raw_path", "code_web=gs://b/stack/*.parquet",
            "--beam_runner", "DataflowRunner", "--beam_options", "project=p,region=us-central1,temp_location=gs://b/t",
            "--dry_run"]
    monkeypatch.setattr("sys.argv", ["codemix", *argv])  # what the console script sees
    assert cli_helper.main(argv) == 0
    out = capsys.readouterr().out
    assert "  --runner=DataflowRunner\n  --project=p\n  --region=us-central1\n  --temp_location=gs://b/t" in out
    assert out.rstrip("\n").endswith(
        "codemix data prepare --family code_web --raw_path 'code_web=gs://b/stack/*.parquet' --beam_runner "
        "DataflowRunner --beam_options project=p,region=us-central1,temp_location=gs://b/t")
    assert not out.lstrip().startswith("{")  # the dry run's text as-is, not JSON


def test_data_commands_name_a_bad_beam_option_and_an_unknown_mixture(capsys):
    from tests.data import cli_helper

    assert cli_helper.main(["data", "prepare", "--beam_runner", "DirectRunner", "--beam_options", "oops"]) == 2
    assert "--beam_options item 'oops' is not key=value" in capsys.readouterr().err
    assert cli_helper.main(["data", "cache", "--mixture", "no_such_mixture", "--output", "/nonexistent"]) == 2
    assert "unknown mixture or task 'no_such_mixture'" in capsys.readouterr().err
