"""Code scores that a program cannot game: the tests are judged outside the sandbox.

The completion and the benchmark's tests run in the same interpreter, so
nothing the interpreter says can be trusted: a completion can exit early
(`sys.exit(0)`, `os._exit(0)`, atexit or excepthook tricks), patch `print`,
`sys.stdout` or builtins, or return an object whose `__eq__` is always True.
So the program never decides whether it passed. Instead:

1. `prepare_tests` rewrites each `assert T` of the tests with `ast`. The
   "user calls" in T are the calls of names the tests do not define and that
   are not builtins (`candidate(...)`, MBPP's function names, the prompt's
   helpers). When the rest of T is closed (only literals, safe builtins and
   `math`), the program only evaluates those calls and reports their values;
   T itself, with its expected values, is *removed from the program* and
   evaluated here by `judge`. So the expected outputs of such asserts never
   exist inside the sandbox (site-packages, where the benchmark data lives, is
   hidden too), and no report can pass them without the right answers.
   Other asserts (ones that use loop variables, lambdas, ...) are evaluated in
   the program, with every compared operand checked to be a plain builtin
   value, and report their truth.
2. Reported values are encoded by exact type (`type(v) is int`, never
   isinstance): None, bool, int, float, complex, str, bytes, list, tuple, set,
   frozenset, dict (and the stdlib's Counter, OrderedDict, defaultdict), deque,
   range, and iterators (sent as their items, judged as an iterator, so a
   generator still differs from the list a test expects). Anything else
   (a subclass, an object with a custom `__eq__`) makes the run fail.
3. After the last test statement the program reports an end record.
   `judge` passes a run only if the sandbox exit status is 0, every record
   parses, the end record is last, every assert of the tests was reached at
   least once, and every assert holds.

Defended: early exits of any kind (no end record, or unreached asserts), hooks
and patched builtins/print/stdout (the program's own verdict is never read),
always-equal and other non-builtin return values (exact-type encoding and
plain operands), forged reports for closed asserts (their expected values are
not in the program).

Not defended: an assert that is not closed (e.g. `assert candidate(x) == x + 1`
inside a loop) is evaluated in the program, so a completion that deliberately
reads the harness's protocol and forges a truth record for it passes that
assert; a completion that computes the right values some other way (e.g. by
reading the prompt's doctests) is, correctly, scored as right.
`closed_fraction` reports how many of a benchmark's asserts are judged outside.
"""
from __future__ import annotations

import ast
import builtins
import collections
import dataclasses
import json
import math

END = "end"
MAX_ITEMS = 100_000  # values per report record; longer iterators fail the run
SAFE_BUILTINS = {name: getattr(builtins, name) for name in (
    "abs", "all", "any", "bool", "chr", "complex", "dict", "divmod", "enumerate", "float",
    "frozenset", "int", "isinstance", "len", "list", "max", "min", "ord", "pow", "range",
    "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "type", "zip",
    "bytes", "hash")}
SAFE_MODULES = {"math": math}
# Builtins a solution may shadow with the function under test (MBPP has a
# `def sum(a, b)`); these stay the real builtins in the judge whatever the
# solution defines, so shadowing them cannot fake a comparison.
PROTECTED = frozenset(SAFE_BUILTINS) - {"sum", "pow", "divmod", "hash", "repr", "chr", "ord"}


@dataclasses.dataclass(frozen=True)
class PreparedTests:
    """Rewritten tests (`source`) and, per assert id, the expression that
    `judge` evaluates (None: evaluated in the program, truth reported)."""

    source: str
    checks: tuple[str | None, ...]

    @property
    def closed_fraction(self) -> float:
        return sum(c is not None for c in self.checks) / max(1, len(self.checks))


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


def solution_names(solution: str) -> frozenset[str]:
    """Names a solution defines at its top level (empty if it does not parse)."""
    try:
        tree = ast.parse(solution)
    except (SyntaxError, ValueError):
        return frozenset()
    return frozenset(_defined_names(ast.Module([n for n in tree.body if not isinstance(
        n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))], []))
                     | {n.name for n in tree.body if isinstance(
                         n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))})


class _Rewriter(ast.NodeTransformer):
    def __init__(self, test_defined: set[str], shadowed: frozenset[str]):
        self.trusted = test_defined
        self.shadowed = shadowed  # builtins the solution redefines (not PROTECTED)
        self.checks: list[str | None] = []

    def _is_user_call(self, node: ast.AST, params: set[str]) -> bool:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            return False
        name = node.func.id
        return name in params or (name not in self.trusted
                                  and (not hasattr(builtins, name) or name in self.shadowed))

    def visit_FunctionDef(self, node):
        # A test function's parameters (HumanEval's `candidate`) are user code.
        saved = self.params
        self.params = saved | {a.arg for a in node.args.args}
        self.generic_visit(node)
        self.params = saved
        return node

    params: set[str] = frozenset()

    def visit_Assert(self, node: ast.Assert):
        index = len(self.checks)
        calls: list[ast.Call] = []
        params = self.params

        class Lift(ast.NodeTransformer):
            def visit_Call(inner, call):
                if self._is_user_call(call, params):
                    calls.append(call)
                    return ast.copy_location(ast.Name(f"__r{len(calls) - 1}", ast.Load()), call)
                return inner.generic_visit(call)

        lifted = Lift().visit(_copy(node.test))
        if _closed(lifted, len(calls), self.trusted | self.shadowed | params):
            self.checks.append(ast.unparse(lifted))
            call = _call("__codemix_report__", ast.Constant(index), ast.List(calls, ast.Load()))
        else:
            self.checks.append(None)
            call = _call("__codemix_report__", ast.Constant(index), ast.Constant(None),
                         _call("__codemix_plain__", _PlainOperands().visit(node.test)))
        return ast.copy_location(ast.Expr(call), node)


class _PlainOperands(ast.NodeTransformer):
    def visit_Compare(self, node):
        self.generic_visit(node)
        node.left = _call("__codemix_plain__", node.left)
        node.comparators = [_call("__codemix_plain__", c) for c in node.comparators]
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        node.values = [_call("__codemix_plain__", v) for v in node.values]
        return node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            node.operand = _call("__codemix_plain__", node.operand)
        return node


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), list(args), [])


def _copy(node: ast.AST) -> ast.AST:
    return ast.parse(ast.unparse(node), mode="eval").body


def _closed(expr: ast.AST, n_calls: int, rebound: set[str]) -> bool:
    allowed = (set(SAFE_BUILTINS) | set(SAFE_MODULES)) - rebound | {f"__r{i}" for i in range(n_calls)}
    for node in ast.walk(expr):
        if isinstance(node, (ast.Lambda, ast.comprehension, ast.NamedExpr, ast.Await, ast.Yield,
                             ast.YieldFrom, ast.Starred)):
            return False
        if isinstance(node, ast.Name) and node.id not in allowed:
            return False
        if isinstance(node, ast.Attribute) and not (
                isinstance(node.value, ast.Name) and node.value.id in SAFE_MODULES
                and not node.attr.startswith("_")):
            return False
    return True


def prepare_tests(tests: str, defined_by_solution: frozenset[str] = frozenset()) -> PreparedTests:
    """Rewrite a benchmark's test code (see the module docstring).
    `defined_by_solution` (`solution_names`) are the solution's top-level names."""
    tree = ast.parse(tests)
    rewriter = _Rewriter(_defined_names(tree), defined_by_solution - PROTECTED)
    tree = ast.fix_missing_locations(rewriter.visit(tree))
    return PreparedTests(ast.unparse(tree), tuple(rewriter.checks))


# The part of the program that runs in the sandbox, before the solution.
_RUNNER = r'''
def __codemix_run__(solution, tests, n_checks):
    import collections as _c, json as _json, os as _os
    _write, _dumps = _os.write, _json.dumps
    _exact = (type(None), bool, int, float, complex, str, bytes, list, tuple, set,
              frozenset, dict, range)
    _iters = tuple(type(x) for x in (iter([]), iter(()), iter(""), iter(range(0)),
                                      iter(set()), iter({}), (lambda: (yield))(),
                                      map(id, []), filter(None, []), zip(), enumerate([]),
                                      reversed([]), {}.keys(), {}.values(), {}.items()))

    def enc(v, depth, budget):
        t = type(v)
        budget[0] -= 1
        if depth > 64 or budget[0] < 0:
            raise AssertionError("value too large or too deep to report")
        if t in _iters:  # judged as an iterator over the same items
            return ["g", [enc(x, depth + 1, budget) for x in v]]
        if t in (_c.Counter, _c.OrderedDict, _c.defaultdict):  # stdlib dicts: compared as dicts
            t = dict
        if t is _c.deque:
            return ["q", [enc(x, depth + 1, budget) for x in v]]
        if t is type(None) or t is bool or t is int or t is str:
            return v
        if t is float:
            return v if v == v and v not in (float("inf"), float("-inf")) else ["F", repr(v)]
        if t is complex:
            return ["c", v.real, v.imag] if v == v else ["F", repr(v)]
        if t is bytes:
            return ["y", v.hex()]
        if t is range:
            return ["r", v.start, v.stop, v.step]
        if t is dict:
            return ["d", [[enc(k, depth + 1, budget), enc(x, depth + 1, budget)] for k, x in v.items()]]
        if t in (list, tuple, set, frozenset):
            return [{list: "l", tuple: "t", set: "s", frozenset: "f"}[t],
                    [enc(x, depth + 1, budget) for x in v]]
        raise AssertionError(f"returned a {t.__qualname__}, not a plain builtin value")

    def plain(v):
        enc(v, 0, [%(max_items)d])
        return v

    def report(index, values, truth=None):
        if values is None:
            record = [index, None, bool(truth)]
            if not truth:
                raise AssertionError(f"assert {index} failed")
        else:
            record = [index, [enc(v, 0, [%(max_items)d]) for v in values]]
        _write(3, (_dumps(record) + "\n").encode())

    g = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(solution, "<solution>", "exec"), g)
    g["__codemix_report__"], g["__codemix_plain__"] = report, plain
    exec(compile(tests, "<tests>", "exec"), g)
    _write(3, (_dumps(["%(end)s", n_checks]) + "\n").encode())
'''.replace("%(max_items)d", str(MAX_ITEMS)).replace("%(end)s", END)


def build_program(solution: str, prepared: PreparedTests) -> str:
    """The program the sandbox runs: the runner, then the solution and the
    rewritten tests as string constants (each compiled in the same namespace)."""
    return (f"{_RUNNER}\n__codemix_run__({solution!r}, {prepared.source!r}, "
            f"{len(prepared.checks)})\n")


def _dec(v):
    if not isinstance(v, list):
        return v
    tag = v[0]
    if tag == "F":
        return complex(v[1]) if "j" in v[1] else float(v[1])
    if tag == "c":
        return complex(v[1], v[2])
    if tag == "y":
        return bytes.fromhex(v[1])
    if tag == "r":
        r = range(v[1], v[2], v[3])
        if len(r) > MAX_ITEMS:  # the judge may materialise it (`list(candidate(n))`)
            raise ValueError("range too long")
        return r
    if tag == "d":
        return {_dec(k): _dec(x) for k, x in v[1]}
    if tag == "g":
        return iter([_dec(x) for x in v[1]])
    return {"l": list, "t": tuple, "s": set, "f": frozenset, "q": collections.deque}[tag](
        _dec(x) for x in v[1])


def judge(prepared: PreparedTests, exit_ok: bool, report: bytes) -> tuple[bool, str]:
    """(passed, reason): the verdict on one run, from its exit status and its
    report alone (see the module docstring)."""
    if not exit_ok:
        return False, "exit status"
    seen = [False] * len(prepared.checks)
    compiled: dict[int, object] = {}
    lines = report.decode("utf-8", "replace").splitlines()
    if not lines:
        return False, "no report"
    for n, line in enumerate(lines):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            return False, f"malformed report line {n}"
        if not isinstance(record, list) or not record:
            return False, f"malformed report line {n}"
        if record[0] == END:
            if n != len(lines) - 1 or record != [END, len(prepared.checks)]:
                return False, "end record not last"
            break
        index = record[0]
        if type(index) is not int or not 0 <= index < len(prepared.checks):
            return False, f"unknown assert {index!r}"
        check = prepared.checks[index]
        try:
            if check is None:
                ok = len(record) == 3 and record[1] is None and record[2] is True
            else:
                if len(record) != 2 or not isinstance(record[1], list):
                    return False, f"malformed record for assert {index}"
                if index not in compiled:
                    compiled[index] = compile(check, f"<assert {index}>", "eval")
                env = {f"__r{i}": _dec(v) for i, v in enumerate(record[1])}
                ok = bool(eval(compiled[index], {"__builtins__": SAFE_BUILTINS, **SAFE_MODULES}, env))
        except Exception as e:  # noqa: BLE001  (a wrong value can make the assert raise)
            return False, f"assert {index} raised {type(e).__name__}"
        if not ok:
            return False, f"assert {index} failed"
        seen[index] = True
    else:
        return False, "no end record (the tests did not finish)"
    if not all(seen):
        return False, f"assert {seen.index(False)} never ran"
    return True, "passed"
