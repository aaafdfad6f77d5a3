"""Run benchmarks on one model and turn the scores into result records.

Scoring by kind:
  multiple_choice  log-likelihood rank classification: the choice whose
                   continuation has the highest log-likelihood wins ("acc");
                   "acc_norm" divides each log-likelihood by the continuation's
                   length in characters first. All (context, continuation)
                   pairs of a benchmark are packed into rows and scored in
                   batches (codemix/eval/scoring.py).
  generation       greedy decoding with a KV cache until a stop sequence,
                   then normalised exact match against every gold alias.
  code             generation with stop sequences, then the benchmark's tests
                   run in the sandbox. n = `num_samples` completions per
                   problem (greedy when n = 1, else temperature sampling);
                   pass@k is the unbiased estimator for every k <= n.

Continuous metrics (DataDecide, arXiv 2504.11393: at small scale they rank
models the way large scale does, where accuracy is mostly noise), per example:
  prob_correct     multiple choice: softmax of the choices' log-likelihoods at
                   the label (codemix/eval/metrics.py).
  bpb              bits per UTF-8 byte of the gold continuation given the
                   (k-shot) context: the label's continuation (multiple
                   choice), " " + the first alias after the prompt
                   (generation), the reference solution after the prompt
                   (code). Lower is better. Gold continuations are scored with
                   the same packed scorer as multiple choice.
They are records like every metric; category means use only the primary one.

k-shot prompts: for example i, k other examples of the same split are drawn
with numpy's default_rng([fewshot_seed, i]) and prepended (each shot is its
context + its gold continuation, shots separated by a blank line). The
default is zero-shot.

Result records (one JSON schema for everything, see `write_results`; the
records, part files and results.json are made in codemix/eval/results.py):
  {"run", "step", "benchmark", "category", "metric", "value", "n", "ci"}
with ci the bootstrap 95% interval [low, high]. A category's mean over its
benchmarks' primary metrics is a record with benchmark "category:<name>",
metric "mean" and n = the number of benchmarks; its interval comes from the
means of the benchmarks' bootstrap replicates. Per-example values sit next
to the records under "per_example": {benchmark: {"ids": [...], metric: [...]}}
(see `EvalOutput`, `write_results`).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import numpy as np
import seqio

from codemix.eval import code_harness, metrics, scoring, tasks
from codemix.eval import mesh as eval_mesh
from codemix.eval.results import (  # noqa: F401  (re-exported: callers import them from runner)
    SCHEMA_VERSION,
    BenchmarkResult,
    EvalOutput,
    format_table,
    load_part,
    make_records,
    per_example_table,
    save_part,
    write_results,
)
from codemix.eval.sandbox import Sandbox
from codemix.model import decode
from codemix.model.config import ModelConfig

log = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Knobs of an evaluation run.

    Attributes:
      num_shots: in-context examples per prompt (0 = zero-shot, the default).
      fewshot_seed: seed of the shot selection (fixed: reruns match).
      row_len: tokens per packed scoring row (short rows are fastest on CPU).
      max_row_len: longer requests get rows of 2x, 4x, ... row_len up to this;
        beyond it contexts are left-truncated.
      batch_size: rows per scoring call; 2 rows of 256 (512 tokens) is the
        fastest per token on a laptop CPU (bigger calls fall out of cache);
        accelerators want far more (e.g. 64).
      gen_batch_size: prompts per generation batch.
      max_prompt_tokens: longer prompts keep their last tokens.
      num_samples: completions per code problem (pass@k needs k <= this).
      temperature: sampling temperature when num_samples > 1.
      bootstrap_resamples: resamples for the 95% intervals.
      max_new_tokens: cap on every benchmark's generation budget (tokens;
        None = each benchmark's own, e.g. 384 for HumanEval). A quick
        laptop evaluation of a tiny model caps it to save decode time.
      progress: tqdm bars.
    """

    num_shots: int = 0
    fewshot_seed: int = 1234
    row_len: int = 256
    max_row_len: int = 2048
    batch_size: int = 2
    gen_batch_size: int = 8
    max_prompt_tokens: int = 1024
    num_samples: int = 1
    temperature: float = 0.8
    bootstrap_resamples: int = 1000
    max_new_tokens: int | None = None
    progress: bool = False


class Evaluator:
    """Scores benchmarks for one model (config, params, vocabulary)."""

    def __init__(self, cfg: ModelConfig, params: dict, vocabulary: seqio.Vocabulary,
                 settings: EvalSettings = EvalSettings(), sandbox: Sandbox | None = None):
        self.cfg, self.params, self.vocab, self.settings = cfg, params, vocabulary, settings
        self._sandbox = sandbox

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox()
        return self._sandbox

    def encode(self, text: str) -> list[int]:
        return list(self.vocab.encode(text))

    def detokenize(self, ids: list[int]) -> str:
        return self.vocab.decode([i for i in ids if i < self.vocab.vocab_size])

    # ------------------------------------------------------------- few-shot
    def _shots(self, examples: list[dict], i: int, render) -> str:
        k = self.settings.num_shots
        if k <= 0:
            return ""
        pool = [j for j in range(len(examples)) if j != i]
        if len(pool) < k:
            raise ValueError(f"{k}-shot prompts need at least {k + 1} examples; got {len(examples)}.")
        picks = np.random.default_rng([self.settings.fewshot_seed, i]).choice(pool, k, replace=False)
        return "".join(render(examples[j]) + "\n\n" for j in picks)

    # ---------------------------------------------------------------- kinds
    def _multiple_choice(self, bench, examples, evaluated) -> tuple[dict, list[dict]]:
        def gold(ex):
            return ex["contexts"][ex["label"]] + ex["continuations"][ex["label"]]

        requests, owners = [], []
        for i in range(evaluated):
            ex = examples[i]
            prefix = self._shots(examples, i, gold)
            cache: dict[str, tuple[int, ...]] = {}
            for ctx, cont in zip(ex["contexts"], ex["continuations"]):
                if ctx not in cache:
                    cache[ctx] = tuple(self.encode(prefix + ctx))
                requests.append(scoring.Request(cache[ctx], tuple(self.encode(cont))))
                owners.append(i)
        ll = scoring.score_packed(self.cfg, self.params, requests, self.settings.row_len,
                                  self.settings.batch_size, self.settings.progress,
                                  self.settings.max_row_len)
        acc, acc_norm, prob, bpb, details, pos = [], [], [], [], [], 0
        for i in range(evaluated):
            ex = examples[i]
            n = len(ex["continuations"])
            scores = ll[pos : pos + n]
            pos += n
            label = ex["label"]
            pred = metrics.rank_choice(scores)
            pred_norm = metrics.rank_choice(scores, [len(c) for c in ex["continuations"]])
            acc.append(float(pred == label))
            acc_norm.append(float(pred_norm == label))
            prob.append(metrics.prob_correct(scores, label))
            bpb.append(metrics.bits_per_byte(scores[label], ex["continuations"][label]))
            details.append({"id": ex["id"], "loglikelihoods": scores.tolist(), "pred": pred,
                            "pred_norm": pred_norm, "label": label})
        return {"acc": np.array(acc), "acc_norm": np.array(acc_norm), "prob_correct": np.array(prob),
                "bpb": np.array(bpb)}, details

    def _gold_bpb(self, contexts: Sequence[str], golds: Sequence[str]) -> np.ndarray:
        """Bits per byte of each gold continuation after its context, packed
        and batched like the multiple-choice scoring."""
        requests = [scoring.Request(tuple(self.encode(c) or [self.vocab.eos_id]), tuple(self.encode(g)))
                    for c, g in zip(contexts, golds)]
        ll = scoring.score_packed(self.cfg, self.params, requests, self.settings.row_len,
                                  self.settings.batch_size, self.settings.progress,
                                  self.settings.max_row_len)
        return np.array([metrics.bits_per_byte(x, g) for x, g in zip(ll, golds)])

    def _generate(self, bench, prompts: list[str], num_samples: int, temperature: float) -> list[str]:
        # Short answers (knowledge) may start on a new line; code keeps its
        # layout, so a stop at the very start is a real (empty) completion.
        stops = decode.StopSequences(bench.stop_sequences, self.detokenize,
                                     skip_leading_whitespace=bench.kind == "generation")
        token_prompts = [self.encode(p)[-self.settings.max_prompt_tokens :] for p in prompts]
        token_prompts = [t or [self.vocab.eos_id] for t in token_prompts]
        repeated = [t for t in token_prompts for _ in range(num_samples)]
        outs = decode.generate(
            self.cfg, self.params, repeated,
            min(bench.max_new_tokens, self.settings.max_new_tokens or bench.max_new_tokens),
            eos_id=self.vocab.eos_id, is_done=stops.is_done, temperature=temperature,
            valid_vocab_size=self.vocab.vocab_size, batch_size=self.settings.gen_batch_size,
            progress=self.settings.progress, placement=eval_mesh.placement(self.params),
        )
        return [stops.truncate(self.detokenize(o)) for o in outs]

    def _generation(self, bench, examples, evaluated) -> tuple[dict, list[dict]]:
        prompts = [
            self._shots(examples, i, lambda ex: ex["prompt"] + " " + ex["answers"][0]) + examples[i]["prompt"]
            for i in range(evaluated)
        ]
        texts = self._generate(bench, prompts, 1, 0.0)
        em, details = [], []
        for ex, text in zip(examples[:evaluated], texts):
            em.append(metrics.exact_match(text.strip(), ex["answers"]))
            details.append({"id": ex["id"], "prediction": text.strip(), "exact_match": em[-1]})
        # The gold answer as the model would write it after "Answer:" (and as
        # the k-shot examples show it).
        bpb = self._gold_bpb(prompts, [" " + ex["answers"][0] for ex in examples[:evaluated]])
        return {"exact_match": np.array(em), "bpb": bpb}, details

    def _code(self, bench, examples, evaluated) -> tuple[dict, list[dict]]:
        n = max(1, self.settings.num_samples)
        if self.settings.num_shots:
            log.info("%s: code benchmarks are zero-shot; ignoring num_shots", bench.name)
        temperature = 0.0 if n == 1 else self.settings.temperature
        completions = self._generate(bench, [ex["prompt"] for ex in examples[:evaluated]], n, temperature)
        # Each completion runs in a sandbox of its own and the benchmark's
        # tests in another (code_harness); only the tests' process gives a
        # verdict. A completion that does not parse fails without running.
        jobs = []
        for i in range(evaluated):
            ex = examples[i]
            for c in completions[i * n : (i + 1) * n]:
                try:
                    jobs.append(code_harness.prepare(ex["program_prefix"], ex["program_prefix"] + c, ex["tests"]))
                except ValueError as e:
                    raise ValueError(f"{bench.name} {ex['id']}: {e}") from e
        verdicts = code_harness.check_many(self.sandbox, jobs, progress=self.settings.progress)
        del jobs
        ks = [k for k in (1, 10, 100) if k <= n]
        per_k = {f"pass@{k}": [] for k in ks}
        details = []
        for i in range(evaluated):
            vs = verdicts[i * n : (i + 1) * n]
            c = sum(v.passed for v in vs)
            for k in ks:
                per_k[f"pass@{k}"].append(metrics.pass_at_k(n, c, k))
            details.append({"id": examples[i]["id"], "completions": completions[i * n : (i + 1) * n],
                            "status": [v.status for v in vs], "verdict": [v.reason for v in vs]})
        errors = sum(v.status == "sandbox_error" for v in verdicts)
        if errors:
            log.warning("%s: %d programs could not start in the sandbox (counted as failures)",
                        bench.name, errors)
        failed = code_harness.failure_counts(verdicts)
        if failed:
            log.info("%s: %d of %d completions failed: %s", bench.name, sum(failed.values()), len(verdicts),
                     ", ".join(f"{k} x{v}" for k, v in failed.items()))
        out = {k: np.array(v) for k, v in per_k.items()}
        out.update(self._code_bpb(bench, examples[:evaluated]))
        return out, details

    def _code_bpb(self, bench, examples) -> dict[str, np.ndarray]:
        """bpb of the reference solutions after the prompts (none if any is missing)."""
        if not all(ex.get("solution") for ex in examples):
            log.info("%s: not every example has a reference solution; no bpb", bench.name)
            return {}
        return {"bpb": self._gold_bpb([ex["prompt"] for ex in examples], [ex["solution"] for ex in examples])}

    # ------------------------------------------------------------------ api
    def evaluate(self, name: str, limit: int | None = None) -> BenchmarkResult:
        bench = tasks.get_benchmark(name)
        start = time.perf_counter()
        need_pool = self.settings.num_shots > 0 and bench.kind != "code"
        examples = tasks.load_examples(name, None if need_pool else limit)
        evaluated = len(examples) if limit is None else min(limit, len(examples))
        run = {"multiple_choice": self._multiple_choice, "generation": self._generation,
               "code": self._code}[bench.kind]
        per_example, details = run(bench, examples, evaluated)
        seconds = time.perf_counter() - start
        summary = ", ".join(f"{m}={v.mean():.4f}" for m, v in per_example.items())
        log.info("%s: %s (n=%d, %.1fs)", name, summary, evaluated, seconds)
        return BenchmarkResult(bench, per_example, seconds, details,
                               [str(ex["id"]) for ex in examples[:evaluated]])

    def run(self, names: Sequence[str], limit: int | None = None, run_name: str = "", step: int = -1,
            parts_dir: str | None = None, parts_key: dict | None = None):
        """Evaluate `names`; returns (records, {benchmark: seconds}, details).
        `run_full` takes the same arguments and also returns the per-example values."""
        out = self.run_full(names, limit, run_name, step, parts_dir, parts_key)
        return out.records, out.seconds, out.details

    def run_full(self, names: Sequence[str], limit: int | None = None, run_name: str = "", step: int = -1,
                 parts_dir: str | None = None, parts_key: dict | None = None) -> EvalOutput:
        """Evaluate `names` (see `EvalOutput` for what comes back).

        `limit` is the first N examples of every benchmark, or a dict
        {benchmark: N} (key "*" for the others; missing = all examples).

        With `parts_dir`, each finished benchmark's per-example scores and ids
        are saved there as <name>.json together with `parts_key` (what was
        evaluated and how); a later call with the same key loads them instead
        of evaluating again, so an interrupted multi-hour evaluation resumes
        where it stopped.
        """
        results = []
        limits = limit if isinstance(limit, dict) else {}
        for n in names:
            lim = limits.get(n, limits.get("*")) if isinstance(limit, dict) else limit
            result = load_part(parts_dir, n, parts_key, lim) if parts_dir else None
            if result is None:
                result = self.evaluate(n, lim)
                if parts_dir:
                    save_part(parts_dir, result, parts_key, lim)
            else:
                log.info("%s: loaded finished scores from %s", n, parts_dir)
            results.append(result)
        return EvalOutput(make_records(results, run_name, step, self.settings.bootstrap_resamples),
                          {r.benchmark.name: r.seconds for r in results},
                          {r.benchmark.name: r.details for r in results},
                          per_example_table(results))
