"""Code scores that a program cannot game: no process that runs model code decides.

A completion and a benchmark's tests never share an interpreter. Each check is
two sandboxes (`Sandbox.run_pair`), both running codemix/eval/remote.py:

  candidate  the solution (prompt + completion) and a small server. It gets
             only the arguments of the calls the tests make to it, never the
             tests, the prompt's helpers or an expected value.
  checker    the benchmark's trusted code only: the prompt's complete
             top-level statements (a prefix of `program_prefix`: imports and
             helpers such as HumanEval's `poly` or `encode_cyclic`, the
             benchmark's own whatever the completion redefines) and the
             tests, with the function under test (and any other name of the
             solution the tests use) standing in for the candidate's. Every
             assert is evaluated here, on values the candidate returned as
             data (exact builtin types; anything else is an opaque handle that
             equals nothing and has no truth value).

The host reads only the checker's verdict line (at most `VERDICT_LIMIT`
bytes): no report of the candidate reaches the host, so the host spends no
CPU decoding and keeps no report in memory. A verdict passes only when the
checker ran the tests to the end, every reply of the candidate was readable,
and the checker exited 0 in time. Defended by construction: early exits,
hooks, patched builtins or `collections` in the candidate (they patch only
the candidate's interpreter), always-equal and int-subclass return values,
forged records (the candidate has no channel to the host, and the checker's
requests carry no expected values), stack walking (there is no harness frame
in the candidate's process). A completion that computes the right answers
some other way is, correctly, scored as right.

Which names the checker takes from the candidate (`remote_names`): the
functions of the prompt the model writes (the `def` its completion continues,
and any prompt function whose body is only a docstring), and every name the
tests read that neither the tests nor the prompt define and that is not a
builtin, or is a builtin the solution redefines at top level (MBPP has a
`def sum(a, b)`) outside `PROTECTED` (builtins the tests use to inspect
results stay the real ones). A standard library module the tests read only
as `M.attr` (`math.isclose`) is imported by the checker itself
(`module_names`), never taken from the candidate. Every name taken from the
candidate is a `Remote` stand-in whose equality is identity, so a test that
compares a constant of the solution with a value fails (neither HumanEval
nor MBPP has one). Arguments cross as copies: a test that checks how the
candidate mutated an argument in place fails (neither has one either; all
664 references pass).

Bounds (per check, whatever the completion does): the host waits at most
the sandbox's `timeout_s` (plus a few seconds to reap), spends CPU only on two
process starts and a verdict of at most 4 KiB, and holds at most that
verdict, bwrap's status lines (64 KiB each) and 2 KB of each stderr while
the check runs; after it, a `Verdict`.

Completions that do not parse (including a RecursionError or MemoryError of
Python's parser on deeply nested input) fail without running, with the
reason in their verdict; nothing a completion contains stops the benchmark.
"""
from __future__ import annotations

import ast
import builtins
import collections
import concurrent.futures
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from codemix.eval import remote

log = logging.getLogger(__name__)

VERDICT_LIMIT = 4096  # bytes of the checker's verdict the host reads
# Builtins that stay the real ones in the checker even when the solution
# redefines them (the tests use them to inspect results).
PROTECTED = frozenset((
    "abs", "all", "any", "bool", "complex", "dict", "enumerate", "float", "frozenset", "int",
    "isinstance", "len", "list", "max", "min", "range", "reversed", "round", "set", "sorted",
    "str", "tuple", "type", "zip", "bytes"))
_REMOTE_SOURCE = Path(remote.__file__).read_text(encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class CheckJob:
    """One completion to check: the solution the candidate runs, and the
    trusted prefix, tests and name bindings the checker runs."""

    solution: str
    prefix: str
    tests: str
    remote_names: tuple[str, ...]
    module_names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Verdict:
    """passed, why (e.g. "passed", "assertion failed (tests line 12)",
    "completion does not parse (RecursionError)"), and the candidate
    sandbox's status ("not run" when it did not parse)."""

    passed: bool
    reason: str
    status: str


def _defined_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _top_level_names(tree: ast.Module) -> set[str]:
    return (_defined_names(ast.Module([n for n in tree.body if not isinstance(n, _DEFS)], []))
            | {n.name for n in tree.body if isinstance(n, _DEFS)})


def _parse_completion(solution: str) -> ast.Module:
    """ast.parse; any failure (SyntaxError, and the RecursionError or
    MemoryError Python's parser raises for deeply nested input) is a
    ValueError naming it."""
    try:
        return ast.parse(solution)
    except Exception as e:  # noqa: BLE001  (whatever the parser raises, the completion fails)
        raise ValueError(f"completion does not parse ({type(e).__name__})") from None


def solution_names(solution: str) -> frozenset[str]:
    """Names a solution binds at its top level; ValueError if it does not parse."""
    return frozenset(_top_level_names(_parse_completion(solution)))


def _split_prompt(tree: ast.Module, solution: str, prefix: str) -> tuple[str, list[ast.stmt], set[str]]:
    """The prompt's part of the solution: (its source, a prefix of `prefix`
    that ends with the last top-level statement lying wholly inside the
    prompt; those statements; the names of the functions the model writes).
    The model writes the function its completion continues (HumanEval's last
    `def`, whose body may already start in the prompt, as /115's `import
    math`) and any prompt function whose body is only a docstring, `pass` or
    `...`. A prompt that does not parse alone (`def f():`) is fine."""
    lines = prefix.split("\n")
    prompt_end = (len(lines), len(lines[-1].encode("utf-8")))
    kept = []
    for node in tree.body:
        if (node.end_lineno, node.end_col_offset) > prompt_end:
            break
        kept.append(node)
    continued = tree.body[len(kept)] if len(kept) < len(tree.body) else None
    written = set()
    if isinstance(continued, (ast.FunctionDef, ast.AsyncFunctionDef)) and continued.lineno <= prompt_end[0]:
        written.add(continued.name)
    for node in kept:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and all(
                isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                for s in node.body):
            written.add(node.name)
    if not kept:
        return "", [], written
    last = kept[-1]
    sol_lines = solution.split("\n")
    length = sum(len(line) + 1 for line in sol_lines[: last.end_lineno - 1])
    length += len(sol_lines[last.end_lineno - 1].encode("utf-8")[: last.end_col_offset].decode("utf-8", "replace"))
    return prefix[:length] + "\n", kept, written


def prepare(prefix: str, solution: str, tests: str) -> CheckJob | Verdict:
    """The check of `solution` (which starts with the benchmark's `prefix`,
    the prompt) against `tests`, or a failed Verdict when the completion does
    not parse. A ValueError means the benchmark's tests do not parse."""
    try:
        test_tree = ast.parse(tests)
    except SyntaxError as e:
        raise ValueError(f"the benchmark's tests do not parse: {e}") from e
    if not solution.startswith(prefix):
        raise ValueError("the solution does not start with the benchmark's program_prefix")
    try:
        tree = _parse_completion(solution)
    except ValueError as e:
        return Verdict(False, str(e), "not run")
    prompt, prompt_nodes, written = _split_prompt(tree, solution, prefix)
    trusted = (_top_level_names(ast.Module(prompt_nodes, [])) - written) | _defined_names(test_tree)
    read, called_or_passed = set(), set()
    attribute_bases = {id(n.value) for n in ast.walk(test_tree) if isinstance(n, ast.Attribute)}
    for n in ast.walk(test_tree):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            read.add(n.id)
            if id(n) not in attribute_bases:
                called_or_passed.add(n.id)
    defined = _top_level_names(tree)
    wanted = read - trusted
    # A standard-library module the tests only take attributes of (`math.isclose`)
    # is the checker's own import, whatever the solution binds to that name.
    module_names = sorted(n for n in wanted - called_or_passed if n in sys.stdlib_module_names)
    remote_names = sorted(written | {
        n for n in wanted - set(module_names)
        if not hasattr(builtins, n) or (n in defined and n not in PROTECTED)})
    return CheckJob(solution, prompt, tests, tuple(remote_names), tuple(module_names))


def candidate_program(job: CheckJob) -> str:
    return f"{_REMOTE_SOURCE}\nserve({job.solution!r})\n"


def checker_program(job: CheckJob) -> str:
    return (f"{_REMOTE_SOURCE}\ncheck({job.prefix!r}, {job.tests!r}, "
            f"{list(job.remote_names)!r}, {list(job.module_names)!r})\n")


def read_verdict(candidate, checker) -> Verdict:
    """The verdict from the checker's run alone (the candidate's run gives
    only its status, for the record)."""
    if checker.status == "sandbox_error":
        return Verdict(False, "sandbox error (checker did not start)", "sandbox_error")
    if checker.status == "timeout":
        return Verdict(False, "timed out", candidate.status)
    if not checker.passed:
        killed = checker.returncode in (-9, 137)
        return Verdict(False, "checker killed at its CPU or memory limit" if killed
                       else f"checker failed (exit status {checker.returncode})", candidate.status)
    try:
        tag, passed, reason = json.loads(checker.report[:VERDICT_LIMIT].split(b"\n")[0])
        if tag != "verdict" or type(passed) is not bool or type(reason) is not str:
            raise ValueError(tag)
    except (ValueError, TypeError):
        return Verdict(False, "checker wrote no verdict", candidate.status)
    return Verdict(passed, reason, candidate.status)


def check(sandbox, job: CheckJob | Verdict) -> Verdict:
    """Run one check (a Verdict from `prepare` is returned as it is)."""
    if isinstance(job, Verdict):
        return job
    candidate, checker = sandbox.run_pair(candidate_program(job), checker_program(job),
                                          report_limit=VERDICT_LIMIT)
    return read_verdict(candidate, checker)


def check_many(sandbox, jobs: Sequence[CheckJob | Verdict], progress: bool = False) -> list[Verdict]:
    """`check` every job, `sandbox.workers` pairs at a time. Each verdict is
    read as its pair finishes and only the Verdict is kept, so the host's
    memory does not grow with what the programs write."""
    with concurrent.futures.ThreadPoolExecutor(max(1, getattr(sandbox, "workers", 1))) as pool:
        futures = [pool.submit(check, sandbox, job) for job in jobs]
        it = futures
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(futures, desc="execute", unit="program", leave=False)
        return [f.result() for f in it]


def failure_counts(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many checks failed for each reason (line numbers dropped), most first."""
    counts = collections.Counter(v.reason.split(" (tests line")[0] for v in verdicts if not v.passed)
    return dict(counts.most_common())
