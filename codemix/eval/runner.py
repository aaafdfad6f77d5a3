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

k-shot prompts: for example i, k other examples of the same split are drawn
with numpy's default_rng([fewshot_seed, i]) and prepended (each shot is its
context + its gold continuation, shots separated by a blank line). The
default is zero-shot.

Result records (one JSON schema for everything, see `write_results`):
  {"run", "step", "benchmark", "category", "metric", "value", "n", "ci"}
with ci the bootstrap 95% interval [low, high]. A category's mean over its
benchmarks' primary metrics is a record with benchmark "category:<name>",
metric "mean" and n = the number of benchmarks; its interval comes from the
means of the benchmarks' bootstrap replicates.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import seqio

from codemix.eval import code_harness, metrics, scoring, tasks
from codemix.eval.sandbox import Sandbox
from codemix.model import decode
from codemix.model.config import ModelConfig

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


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
    progress: bool = False


@dataclasses.dataclass
class BenchmarkResult:
    benchmark: tasks.Benchmark
    per_example: dict[str, np.ndarray]  # metric -> per-example values
    seconds: float
    details: list[dict]


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
        acc, acc_norm, details, pos = [], [], [], 0
        for i in range(evaluated):
            ex = examples[i]
            n = len(ex["continuations"])
            scores = ll[pos : pos + n]
            pos += n
            pred = metrics.rank_choice(scores)
            pred_norm = metrics.rank_choice(scores, [len(c) for c in ex["continuations"]])
            acc.append(float(pred == ex["label"]))
            acc_norm.append(float(pred_norm == ex["label"]))
            details.append({"id": ex["id"], "loglikelihoods": scores.tolist(), "pred": pred,
                            "pred_norm": pred_norm, "label": ex["label"]})
        return {"acc": np.array(acc), "acc_norm": np.array(acc_norm)}, details

    def _generate(self, bench, prompts: list[str], num_samples: int, temperature: float) -> list[str]:
        # Short answers (knowledge) may start on a new line; code keeps its
        # layout, so a stop at the very start is a real (empty) completion.
        stops = decode.StopSequences(bench.stop_sequences, self.detokenize,
                                     skip_leading_whitespace=bench.kind == "generation")
        token_prompts = [self.encode(p)[-self.settings.max_prompt_tokens :] for p in prompts]
        token_prompts = [t or [self.vocab.eos_id] for t in token_prompts]
        repeated = [t for t in token_prompts for _ in range(num_samples)]
        outs = decode.generate(
            self.cfg, self.params, repeated, bench.max_new_tokens,
            eos_id=self.vocab.eos_id, is_done=stops.is_done, temperature=temperature,
            valid_vocab_size=self.vocab.vocab_size, batch_size=self.settings.gen_batch_size,
            progress=self.settings.progress,
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
        return {"exact_match": np.array(em)}, details

    def _code(self, bench, examples, evaluated) -> tuple[dict, list[dict]]:
        n = max(1, self.settings.num_samples)
        if self.settings.num_shots:
            log.info("%s: code benchmarks are zero-shot; ignoring num_shots", bench.name)
        temperature = 0.0 if n == 1 else self.settings.temperature
        completions = self._generate(bench, [ex["prompt"] for ex in examples[:evaluated]], n, temperature)
        # The program only reports values; code_harness.judge decides the pass
        # outside the sandbox, so early exits and patched asserts score 0.
        programs, prepared = [], []
        for i in range(evaluated):
            ex = examples[i]
            for c in completions[i * n : (i + 1) * n]:
                solution = ex["program_prefix"] + c
                try:
                    prepared.append(code_harness.prepare_tests(ex["tests"], code_harness.solution_names(solution)))
                except SyntaxError as e:
                    raise ValueError(f"{bench.name} {ex['id']}: the benchmark's tests do not parse: {e}") from e
                programs.append(code_harness.build_program(solution, prepared[-1]))
        results = self.sandbox.run_many(programs, progress=self.settings.progress)
        verdicts = [code_harness.judge(p, r.passed, r.report) for p, r in zip(prepared, results)]
        ks = [k for k in (1, 10, 100) if k <= n]
        per_k = {f"pass@{k}": [] for k in ks}
        details = []
        for i in range(evaluated):
            rs = results[i * n : (i + 1) * n]
            vs = verdicts[i * n : (i + 1) * n]
            c = sum(ok for ok, _ in vs)
            for k in ks:
                per_k[f"pass@{k}"].append(metrics.pass_at_k(n, c, k))
            details.append({"id": examples[i]["id"], "completions": completions[i * n : (i + 1) * n],
                            "status": [r.status for r in rs], "verdict": [why for _, why in vs]})
        statuses = [r.status for r in results]
        if "sandbox_error" in statuses:
            log.warning("%s: %d programs could not start in the sandbox (counted as failures)",
                        bench.name, statuses.count("sandbox_error"))
        return {k: np.array(v) for k, v in per_k.items()}, details

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
        return BenchmarkResult(bench, per_example, seconds, details)

    def run(self, names: Sequence[str], limit: int | None = None, run_name: str = "", step: int = -1,
            parts_dir: str | None = None, parts_key: dict | None = None):
        """Evaluate `names`; returns (records, {benchmark: seconds}, details).

        With `parts_dir`, each finished benchmark's per-example scores are saved
        there as <name>.json together with `parts_key` (what was evaluated and
        how); a later call with the same key loads them instead of evaluating
        again, so an interrupted multi-hour evaluation resumes where it stopped.
        """
        results = []
        for n in names:
            result = load_part(parts_dir, n, parts_key, limit) if parts_dir else None
            if result is None:
                result = self.evaluate(n, limit)
                if parts_dir:
                    save_part(parts_dir, result, parts_key, limit)
            else:
                log.info("%s: loaded finished scores from %s", n, parts_dir)
            results.append(result)
        return (make_records(results, run_name, step, self.settings.bootstrap_resamples),
                {r.benchmark.name: r.seconds for r in results},
                {r.benchmark.name: r.details for r in results})


def _part_key(key: dict | None, limit: int | None) -> dict:
    return {**(key or {}), "limit": limit}


def save_part(parts_dir: str, result: BenchmarkResult, key: dict | None, limit: int | None) -> None:
    """One finished benchmark's per-example scores (see `Evaluator.run`)."""
    os.makedirs(parts_dir, exist_ok=True)
    doc = {"key": _part_key(key, limit), "benchmark": result.benchmark.name, "seconds": result.seconds,
           "per_example": {m: v.tolist() for m, v in result.per_example.items()},
           "details": result.details}
    path = os.path.join(parts_dir, f"{result.benchmark.name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f, default=_jsonable)
    os.replace(path + ".tmp", path)


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"can't save {type(x).__name__} in an eval part file")


def load_part(parts_dir: str, name: str, key: dict | None, limit: int | None) -> BenchmarkResult | None:
    """The saved result of `name` if it was made with the same key, else None
    (a part made with other settings is ignored and later overwritten)."""
    path = os.path.join(parts_dir, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        doc = json.load(f)
    if doc.get("key") != json.loads(json.dumps(_part_key(key, limit))):
        log.info("%s: ignoring %s, made with other settings", name, path)
        return None
    return BenchmarkResult(tasks.get_benchmark(name),
                           {m: np.asarray(v) for m, v in doc["per_example"].items()},
                           float(doc["seconds"]), doc["details"])


def make_records(results: Sequence[BenchmarkResult], run: str, step: int, resamples: int = 1000) -> list[dict]:
    """Per-benchmark records of every metric, then per-category means."""
    records, by_category = [], {}
    for r in results:
        b = r.benchmark
        for metric, values in r.per_example.items():
            reps = metrics.bootstrap_replicates(values, resamples, seed=0)
            records.append({"run": run, "step": step, "benchmark": b.name, "category": b.category,
                            "metric": metric, "value": float(values.mean()) if values.size else float("nan"),
                            "n": int(values.size), "ci": metrics.percentile_interval(reps)})
            if metric == b.primary_metric:
                by_category.setdefault(b.category, []).append((float(values.mean()), reps))
    for category, items in by_category.items():
        reps = np.mean([rep for _, rep in items], axis=0)
        records.append({"run": run, "step": step, "benchmark": f"category:{category}", "category": category,
                        "metric": "mean", "value": float(np.mean([v for v, _ in items])), "n": len(items),
                        "ci": metrics.percentile_interval(reps)})
    return records


def write_results(path: str, records: list[dict], meta: dict | None = None) -> None:
    """results.json: {"schema_version", "created", "meta", "records": [...]}."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    doc = {"schema_version": SCHEMA_VERSION,
           "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "meta": meta or {}, "records": records}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
    os.replace(tmp, path)


def format_table(records: list[dict]) -> str:
    lines = [f"{'benchmark':<22} {'metric':<10} {'value':>8} {'n':>6}  95% CI"]
    for r in records:
        lo, hi = r["ci"]
        lines.append(f"{r['benchmark']:<22} {r['metric']:<10} {r['value']:>8.4f} {r['n']:>6}  [{lo:.4f}, {hi:.4f}]")
    return "\n".join(lines)
