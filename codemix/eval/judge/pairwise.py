"""Generative quality: pairwise LLM-as-a-judge win rates of a candidate
checkpoint against a baseline checkpoint.

Flow:
  1. Both models answer every prompt (greedy decoding with a KV cache by
     default, `codemix.model.decode`), one model in memory at a time.
  2. The judge compares each pair twice: candidate as A and baseline as B,
     then swapped. Position bias of the judge cancels this way.
  3. Reconciliation, per prompt, from the candidate's side (the MT-Bench
     rule): each order gives win / tie / loss; when the two orders agree that
     is the outcome, when they disagree the pair is a tie (and is counted as
     "inconsistent"). A pair with an unreadable verdict in either order is
     left out of the rates and counted as invalid; it is never guessed.
  4. Rates over the valid pairs: win, tie, loss, and win-minus-loss (the mean
     of +1 / 0 / -1), each with a percentile-bootstrap 95% interval. All four
     metrics use the same resampled indices (same seed, same n), so their
     intervals describe the same resamples.

Records follow codemix/eval/runner.py: benchmark "mtbench_judge", category
"generative", run/step of the candidate; the baseline and the counts are in
the results' meta.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import numpy as np

from codemix.eval import metrics
from codemix.eval.judge import prompts as prompts_lib
from codemix.eval.judge.client import JudgeClient, JudgeConfig, Judgment

log = logging.getLogger(__name__)

BENCHMARK = "mtbench_judge"
CATEGORY = "generative"
METRICS = ("win_rate", "tie_rate", "loss_rate", "win_minus_loss")

# Outcome of the candidate in one order, from the judge's letter.
_CANDIDATE_FIRST = {"A": 1, "B": -1, "C": 0}
_CANDIDATE_SECOND = {"A": -1, "B": 1, "C": 0}


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """How the checkpoints answer.

    Attributes:
      max_new_tokens: answer budget (tokens); 256 holds most MT-Bench answers.
      max_prompt_tokens: longer prompts keep their last tokens.
      batch_size: prompts per generation batch.
      template: how a prompt is shown to a base model ({prompt} is replaced).
      temperature: 0 = greedy (the default: reruns give the same answers);
        > 0 samples, deterministically from `seed`.
      seed: sampling seed (same for both models).
      stop: an answer ends at the first of these strings (a base model goes
        on to write the next "Question:" itself).
    """

    max_new_tokens: int = 256
    max_prompt_tokens: int = 1024
    batch_size: int = 8
    template: str = "Question: {prompt}\nAnswer:"
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ("\nQuestion:",)


def reconcile(first: str | None, second: str | None) -> tuple[int | None, bool]:
    """(outcome for the candidate: +1 win, 0 tie, -1 loss, None invalid; inconsistent?).

    `first` is the verdict with the candidate as A, `second` with it as B.
    """
    if first not in _CANDIDATE_FIRST or second not in _CANDIDATE_SECOND:
        return None, False
    a, b = _CANDIDATE_FIRST[first], _CANDIDATE_SECOND[second]
    if a == b:
        return a, False
    return 0, True


def summarize(outcomes: Sequence[int | None], resamples: int = 1000) -> dict:
    """Rates with bootstrap intervals over the valid outcomes, plus counts."""
    valid = np.array([o for o in outcomes if o is not None], dtype=np.float64)
    per_metric = {"win_rate": (valid == 1).astype(float), "tie_rate": (valid == 0).astype(float),
                  "loss_rate": (valid == -1).astype(float), "win_minus_loss": valid}
    out = {}
    for name in METRICS:
        values = per_metric[name]
        reps = metrics.bootstrap_replicates(values, resamples, seed=0)
        out[name] = {"value": float(values.mean()) if values.size else float("nan"),
                     "n": int(values.size), "ci": metrics.percentile_interval(reps)}
    return out


def generate_answers(directory: str, prompts: Sequence[str], settings: GenerationSettings,
                     progress: bool = False, step: int | None = None) -> tuple[list[str], object]:
    """Answers (greedy unless settings.temperature > 0) of the model in `directory` to `prompts`; (answers, RunInfo)."""
    from codemix.eval.loading import load_model_for_eval
    from codemix.model import decode

    cfg, params, vocab, info = load_model_for_eval(directory, step)
    encoded = []
    for p in prompts:
        ids = list(vocab.encode(settings.template.format(prompt=p)))[-settings.max_prompt_tokens:]
        encoded.append(ids or [vocab.eos_id])

    def detokenize(ids: list[int]) -> str:
        return vocab.decode([i for i in ids if i < vocab.vocab_size])

    stops = decode.StopSequences(settings.stop, detokenize)
    outs = decode.generate(cfg, params, encoded, settings.max_new_tokens, eos_id=vocab.eos_id,
                           is_done=stops.is_done, valid_vocab_size=vocab.vocab_size,
                           batch_size=settings.batch_size, temperature=settings.temperature,
                           seed=settings.seed, progress=progress)
    return [stops.truncate(detokenize(o)).strip() for o in outs], info


def judge_answers(client: JudgeClient, questions: Sequence[str], candidate: Sequence[str],
                  baseline: Sequence[str], progress: bool = False) -> tuple[list[Judgment], list[Judgment]]:
    """Both orders for every pair: (candidate-as-A judgments, candidate-as-B judgments)."""
    n = len(questions)
    triples = [(q, c, b) for q, c, b in zip(questions, candidate, baseline)]
    triples += [(q, b, c) for q, c, b in zip(questions, candidate, baseline)]
    judgments = client.judge_many(triples, progress=progress)
    return judgments[:n], judgments[n:]


def score_pairs(rows: Sequence[dict], first: Sequence[Judgment], second: Sequence[Judgment],
                resamples: int = 1000) -> tuple[dict, list[dict]]:
    """(summary with rates and counts, per-prompt details)."""
    outcomes, details = [], []
    inconsistent = 0
    sources = {"logprobs": 0, "text": 0, "invalid": 0}
    letters = {"A": 0, "B": 0, "C": 0}  # a judge that mostly says "A" has a first-slot bias
    for row, j1, j2 in zip(rows, first, second):
        outcome, mixed = reconcile(j1.verdict, j2.verdict)
        outcomes.append(outcome)
        inconsistent += mixed
        for j in (j1, j2):
            sources[j.source] = sources.get(j.source, 0) + 1
            if j.verdict in letters:
                letters[j.verdict] += 1
        details.append({"id": row["id"], "category": row["category"],
                        "outcome": {1: "win", 0: "tie", -1: "loss", None: "invalid"}[outcome],
                        "inconsistent": mixed,
                        "candidate_as_a": j1.to_json(), "candidate_as_b": j2.to_json()})
    summary = summarize(outcomes, resamples)
    summary["counts"] = {
        "pairs": len(outcomes), "valid_pairs": sum(o is not None for o in outcomes),
        "invalid_pairs": sum(o is None for o in outcomes), "inconsistent_pairs": inconsistent,
        "wins": outcomes.count(1), "ties": outcomes.count(0), "losses": outcomes.count(-1),
        "verdicts_from_logprobs": sources["logprobs"], "verdicts_from_text": sources["text"],
        "verdicts_invalid": sources["invalid"],
        "verdicts_first_slot": letters["A"], "verdicts_second_slot": letters["B"], "verdicts_tie": letters["C"],
    }
    return summary, details


def make_records(summary: dict, run: str, step: int) -> list[dict]:
    return [{"run": run, "step": step, "benchmark": BENCHMARK, "category": CATEGORY, "metric": m,
             "value": summary[m]["value"], "n": summary[m]["n"], "ci": summary[m]["ci"]} for m in METRICS]


def judge_runs(candidate_dir: str, baseline_dir: str, judge: JudgeConfig, prompts: str | None = None,
               limit: int | None = None, output: str | None = None, *,
               candidate_step: int | None = None, baseline_step: int | None = None,
               generation: GenerationSettings = GenerationSettings(), resamples: int = 1000,
               progress: bool = False) -> dict:
    """Win rates of `candidate_dir` against `baseline_dir` as judged by `judge`.

    Args:
      candidate_dir, baseline_dir: training workdirs or model dirs
        (`codemix.eval.loading.load_model_for_eval`).
      judge: the judge endpoint and its cache.
      prompts: JSONL of prompts (default: MT-Bench first turns).
      limit: first N prompts.
      output: results JSON path (runner.write_results schema), optional.
      candidate_step, baseline_step: checkpoint steps of workdirs (default:
        the latest), so a run can also be judged against its own earlier step.
    Returns {"records", "meta", "details"}; meta holds the counts (invalid
    verdicts, inconsistent pairs, verdict sources) and timings.
    """
    from codemix.eval.runner import write_results

    start = time.perf_counter()
    rows = prompts_lib.load_prompts(prompts, limit)
    questions = [r["prompt"] for r in rows]
    # One model in memory at a time; both usually share a config, so the
    # compiled decode step is reused.
    cand_answers, cand_info = generate_answers(candidate_dir, questions, generation, progress, candidate_step)
    base_answers, base_info = generate_answers(baseline_dir, questions, generation, progress, baseline_step)
    gen_seconds = time.perf_counter() - start
    with JudgeClient(judge) as client:
        first, second = judge_answers(client, questions, cand_answers, base_answers, progress)
        requests_sent = client.requests_sent
    summary, details = score_pairs(rows, first, second, resamples)
    for d, c, b in zip(details, cand_answers, base_answers):
        d["candidate_answer"], d["baseline_answer"] = c, b
    records = make_records(summary, cand_info.run, cand_info.step)
    counts = summary["counts"]
    meta = {"candidate": cand_info.path, "baseline": base_info.path, "baseline_run": base_info.run,
            "baseline_step": base_info.step, "prompts": prompts or prompts_lib.mtbench_path(),
            "limit": limit, "judge_url": judge.base_url, "judge_model": judge.model,
            "counts": counts, "judge_requests_sent": requests_sent,
            "generation": dataclasses.asdict(generation), "generation_seconds": gen_seconds,
            "total_seconds": time.perf_counter() - start}
    if counts["verdicts_invalid"]:
        log.warning("%d of %d judge verdicts were unreadable; %d pairs left out of the rates",
                    counts["verdicts_invalid"], 2 * counts["pairs"], counts["invalid_pairs"])
    if output:
        write_results(output, records, meta)
    return {"records": records, "meta": meta, "details": details}
