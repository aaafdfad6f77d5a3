"""The `full` configs read the user's raw files (hand-made here, in tmp dirs)."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from codemix.data import corpora, corpus
from codemix.data.readers import DataError

PROSE = "The river rose slowly through the night, and by morning the village had moved to the hill. " * 3
CODE = "def f(x):\n    return x + 1\n\nfor i in range(3):\n    print(f(i))\n"


def _zst_jsonl(path, records):
    raw = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))


def _sp(text, name="RedPajamaCommonCrawl"):
    return {"text": text, "meta": {"redpajama_set_name": name}}


def _prepare(family, raw, tmp_path, **kw):
    options = corpus.CorpusOptions(data_dir=str(tmp_path / "tfds"), raw_paths={family: raw}, **kw)
    docs, stats = corpora.get_builder(family, options).collect()
    return docs, stats, options


def test_text_full_removes_github_stackexchange_code_and_duplicates(tmp_path):
    _zst_jsonl(tmp_path / "chunk_0.jsonl.zst", [
        _sp(PROSE), _sp(PROSE), _sp("Another paragraph about " * 20, "RedPajamaWikipedia"),
        _sp(CODE * 3, "RedPajamaGithub"), _sp("How do I sort? " * 10, "RedPajamaStackExchange"),
        _sp(CODE * 4, "RedPajamaCommonCrawl"),
    ])
    docs, stats, _ = _prepare("text", str(tmp_path / "*.jsonl.zst"), tmp_path)
    kept = docs["train"] + docs["validation"]
    assert len(kept) == 2
    assert stats["dropped"]["removed_set:RedPajamaGithub"] == 1
    assert stats["dropped"]["removed_set:RedPajamaStackExchange"] == 1
    assert stats["dropped"]["code_detector"] == 1
    assert stats["dropped"]["exact_duplicate"] == 1
    assert {d.source for d in kept} == {"slimpajama:RedPajamaCommonCrawl", "slimpajama:RedPajamaWikipedia"}
    assert all(d.family == "text" and ".jsonl.zst:" in d.path for d in kept)


def test_code_web_full_reads_stack_parquet_by_language_folder(tmp_path):
    for lang, n in (("python", 3), ("rust", 2), ("klingon", 1)):
        (tmp_path / lang).mkdir()
        table = pa.table({"content": [f"// {lang} file {i}\nfn main() {{}}\n" for i in range(n)],
                          "size": np.arange(n)})
        pq.write_table(table, tmp_path / lang / "data-0.parquet")
    docs, stats, options = _prepare("code_web", str(tmp_path), tmp_path)
    kept = docs["train"] + docs["validation"]
    assert sorted(d.language for d in kept) == ["python"] * 3 + ["rust"] * 2
    assert stats["dropped"]["language_not_in_study:klingon"] == 1
    builder = corpora.prepare("code_web", options)  # the whole TFDS path, too
    assert builder.info.splits["train"].num_examples + builder.info.splits["validation"].num_examples == 5


def test_code_adjacent_full_reads_commits_notebooks_and_stackexchange(tmp_path):
    (tmp_path / "commits").mkdir()
    (tmp_path / "commits" / "c.jsonl").write_text(json.dumps({"message": "Fix off-by-one", "diff": "-a\n+b\n"}) + "\n")
    (tmp_path / "notebooks" / "sub").mkdir(parents=True)
    nb = {"cells": [{"cell_type": "markdown", "source": ["# Title\n"]}, {"cell_type": "code", "source": "x = 1"}]}
    (tmp_path / "notebooks" / "sub" / "a.ipynb").write_text(json.dumps(nb))
    (tmp_path / "stackexchange").mkdir()
    _zst_jsonl(tmp_path / "stackexchange" / "s.jsonl.zst",
               [_sp("Q: how? A: so.", "RedPajamaStackExchange"), _sp(PROSE)])
    docs, stats, _ = _prepare("code_adjacent", str(tmp_path), tmp_path)
    kept = docs["train"] + docs["validation"]
    assert sorted(d.language for d in kept) == ["commit", "jupyter", "stackexchange"]
    nb_doc = next(d for d in kept if d.language == "jupyter")
    assert nb_doc.text == "# %% [markdown]\n# Title\n\n# %%\nx = 1\n"
    assert stats["dropped"]["other_set:RedPajamaCommonCrawl"] == 1


def test_code_synthetic_full_renders_problems(tmp_path):
    rec = {"problem": "Add one.", "solution": "def f(x):\n    return x + 1", "tests": ["assert f(1) == 2"]}
    (tmp_path / "p.jsonl").write_text(json.dumps(rec) + "\n")
    docs, _, _ = _prepare("code_synthetic", str(tmp_path / "p.jsonl"), tmp_path)
    (doc,) = docs["train"] + docs["validation"]
    assert doc.text == '"""Add one.\n"""\n\ndef f(x):\n    return x + 1\n\n\nassert f(1) == 2\n'


def test_full_config_without_a_path_is_an_error(tmp_path):
    with pytest.raises(DataError, match="glob"):
        _prepare("text", str(tmp_path / "missing" / "*.jsonl.zst"), tmp_path)
