"""A run's files as `codemix report` reads them, each checked for its shape.

The files of a run directory are written by codemix (train, experiment run,
eval), but they also get cut short by a killed job, half-copied, or edited
by hand. Each reader here returns what can be used and appends one line per
problem to `problems`, naming the file (and line), what was skipped and how
to fix it; load.py puts those lines in the run's entry of
`ExperimentData.missing`, which the report and the `codemix report` command
print. Nothing is skipped without such a line.

  read_object    a JSON file that must hold an object (lineage, run_info, eval, held-out)
  read_metrics   metrics.jsonl: one object per line with a whole-number step;
                 a torn last line, a line that is not an object, a step that
                 is not a whole number, a non-numeric loss are skipped and
                 named; a step logged twice keeps its last line
  check_run_info the fields of run_info.json the report uses (sources, shares, params)
"""
from __future__ import annotations

import json
import logging
import math
import numbers

from etils import epath

log = logging.getLogger(__name__)

# How each file is (re)written, for the fix in a message.
FIXES = {
    "lineage.json": "`codemix experiment run` writes it: restore it from a copy, or delete it and rerun the "
                    "experiment with the same --workdir (the run resumes from its own checkpoints)",
    "run_info.json": "`codemix train` writes it when a run starts: restore it from a copy, or delete it "
                     "(the run is then reported without its size and mixture shares)",
    "eval.json": "rerun the evaluation (codemix eval --checkpoint RUN_DIR --output RUN_DIR/eval.json), "
                 "or delete the file",
    "heldout": "the train loop writes heldout/step_<N>.json: restore it from a copy, or delete it (the "
               "run's other held-out evaluations are used)",
    "metrics.jsonl": "Delete or repair the line (the run's other lines are used); a run that resumes "
                     "rewrites every line after its checkpoint",
}

# metrics.jsonl keys the report computes with: numbers (or null) when present.
_NUMERIC = ("loss", "tokens", "lr")
_NUMERIC_PREFIXES = ("loss/", "tokens/", "val/")


def _kind(value) -> str:
    """How a JSON value reads in a message: 'a JSON list', 'null', 'a string ('12')'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    return {dict: "a JSON object", list: "a JSON list"}.get(type(value), f"a number ({value!r})")


def _fix(path: epath.Path) -> str:
    return FIXES["heldout"] if path.parent.name == "heldout" else FIXES.get(path.name, "rewrite or delete it")


def read_object(path: epath.Path, problems: list[str]) -> dict | None:
    """The JSON object in `path`; None (and a line in `problems`) if it is
    absent (no line), not JSON, or another JSON value."""
    path = epath.Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        problems.append(f"{path} is not valid JSON ({e}): ignored. {_fix(path)}.")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path} holds {_kind(value)}, not a JSON object: ignored. {_fix(path)}.")
        return None
    return value


def _is_number(v) -> bool:
    return v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))


def _line_problem(record) -> str | None:
    if not isinstance(record, dict):
        return f"is {_kind(record)}, not a JSON object"
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"has step {_kind(step) if 'step' in record else 'missing'}, not a whole number"
    for k, v in record.items():
        if (k in _NUMERIC or k.startswith(_NUMERIC_PREFIXES)) and not _is_number(v):
            return f"has {k} {_kind(v)}, not a number"
    return None


def read_metrics(path: epath.Path, problems: list[str], final_step=None) -> list[dict]:
    """metrics.jsonl's usable lines, in step order (see the module docstring).
    `final_step` (the lineage's) is named when a torn last line hides it."""
    path = epath.Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    torn = not text.endswith("\n") and bool(lines[-1].strip())
    by_step: dict[int, dict] = {}
    skipped: list[str] = []
    repeated = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if torn and i == len(lines) - 1:
                last = max(by_step, default=None)
                shown = f"the last step shown is {last}" if last is not None else "no step is shown"
                if isinstance(final_step, int) and last is not None and final_step > last:
                    shown += f" (the run's lineage says it reached step {final_step})"
                skipped.append(f"line {i + 1} is cut short ({len(line.encode())} bytes, no end of line: a "
                               f"run stopped while writing it, or a partial copy) and was skipped, so {shown}")
            else:
                skipped.append(f"line {i + 1} is not JSON ({e.msg}) and was skipped")
            continue
        why = _line_problem(record)
        if why:
            skipped.append(f"line {i + 1} {why} and was skipped")
            continue
        if record["step"] in by_step:
            repeated += 1
        by_step[record["step"]] = record
    if repeated:
        skipped.append(f"{repeated} line(s) repeat a step logged earlier (two trainers on one workdir, or a "
                       f"resume that kept the old lines); the last line of each step is used")
    for s in skipped:
        problems.append(f"{path}: {s}. {FIXES['metrics.jsonl']}.")
        log.warning("%s: %s", path, s)
    return [by_step[s] for s in sorted(by_step)]


def check_run_info(path: epath.Path, info: dict, problems: list[str]) -> dict:
    """`info` with the fields the report uses dropped (and named) where their
    type is wrong: sources (list of names), requested_shares (one number per
    source), params (a number)."""
    info = dict(info)
    sources = info.get("sources")
    if sources is not None and not (isinstance(sources, list) and all(isinstance(s, str) for s in sources)):
        problems.append(f"{path}: sources is {_kind(sources)}, not a list of source names, so the run's "
                        f"realized mixture shares are not shown. {FIXES['run_info.json']}.")
        info.pop("sources")
        info.pop("requested_shares", None)
    shares = info.get("requested_shares")
    if shares is not None and not (isinstance(shares, list) and len(shares) == len(info.get("sources") or [])
                                   and all(_is_number(x) for x in shares)):
        problems.append(f"{path}: requested_shares is {_kind(shares)}, not one number per source, so the "
                        f"requested shares read 'missing'. {FIXES['run_info.json']}.")
        info.pop("requested_shares")
    params = info.get("params")
    if not _is_number(params) or (isinstance(params, float) and not math.isfinite(params)):
        problems.append(f"{path}: params is {_kind(params)}, not a number: not shown. {FIXES['run_info.json']}.")
        info.pop("params")
    return info
