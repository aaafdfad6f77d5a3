"""Benchmark results: result records, per-benchmark part files and results.json.

`make_records` turns finished benchmarks (`BenchmarkResult`) into result records
(the schema in codemix/eval/runner.py's docstring) with bootstrap intervals;
`save_part` / `load_part` keep each finished benchmark's per-example scores so
that an interrupted evaluation resumes (`Evaluator.run_full`); `write_results`
writes results.json with the per-example values beside the records.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Sequence

import numpy as np

from codemix.eval import metrics, tasks

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclasses.dataclass
class BenchmarkResult:
    benchmark: tasks.Benchmark
    per_example: dict[str, np.ndarray]  # metric -> per-example values
    seconds: float
    details: list[dict]
    ids: list[str] = dataclasses.field(default_factory=list)  # example ids, in per_example order


@dataclasses.dataclass
class EvalOutput:
    """Everything `Evaluator.run_full` produces.

    Attributes:
      records: result records (module docstring), per metric and category.
      seconds: wall-clock seconds per benchmark.
      details: per benchmark, per-example predictions and scores.
      per_example: {benchmark: {"ids": [str], metric: [float], ...}}, the
        values the records average (what `write_results` stores).
    """

    records: list[dict]
    seconds: dict[str, float]
    details: dict[str, list[dict]]
    per_example: dict[str, dict[str, list]]


def per_example_table(results: Sequence[BenchmarkResult]) -> dict[str, dict[str, list]]:
    """{benchmark: {"ids": [...], metric: [...]}} of finished benchmarks."""
    return {r.benchmark.name: {"ids": [str(i) for i in r.ids],
                               **{m: np.asarray(v, np.float64).tolist() for m, v in r.per_example.items()}}
            for r in results}


def _part_key(key: dict | None, limit: int | None) -> dict:
    return {**(key or {}), "limit": limit}


def save_part(parts_dir: str, result: BenchmarkResult, key: dict | None, limit: int | None) -> None:
    """One finished benchmark's per-example scores (see `Evaluator.run`)."""
    from codemix import storage

    storage.path(parts_dir).mkdir(parents=True, exist_ok=True)
    doc = {"key": _part_key(key, limit), "benchmark": result.benchmark.name, "seconds": result.seconds,
           "per_example": {m: v.tolist() for m, v in result.per_example.items()},
           "ids": [str(i) for i in result.ids], "details": result.details}
    storage.write_text(storage.path(parts_dir, f"{result.benchmark.name}.json"), json.dumps(doc, default=_jsonable))


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"can't save {type(x).__name__} in an eval part file")


def load_part(parts_dir: str, name: str, key: dict | None, limit: int | None) -> BenchmarkResult | None:
    """The saved result of `name` if it was made with the same key, else None
    (a part made with other settings is ignored and later overwritten)."""
    from codemix import storage

    path = storage.path(parts_dir, f"{name}.json")
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    if doc.get("key") != json.loads(json.dumps(_part_key(key, limit))):
        log.info("%s: ignoring %s, made with other settings", name, path)
        return None
    # Parts written before ids were saved still have them in their details.
    ids = doc.get("ids") or [str(d.get("id", "")) for d in doc["details"]]
    return BenchmarkResult(tasks.get_benchmark(name),
                           {m: np.asarray(v) for m, v in doc["per_example"].items()},
                           float(doc["seconds"]), doc["details"], ids)


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


def write_results(path: str, records: list[dict], meta: dict | None = None,
                  per_example: dict[str, dict[str, list]] | None = None) -> None:
    """results.json: {"schema_version", "created", "meta", "records": [...]},
    plus "per_example": {benchmark: {"ids": [str], metric: [float]}} when
    given (`EvalOutput.per_example`; one line per benchmark, as the lists
    hold up to 10k values)."""
    from codemix import storage
    from codemix.train.checkpointing import absolute

    path = absolute(path)  # a URL stays a URL
    storage.path(path).parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema_version": SCHEMA_VERSION,
           "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "meta": meta or {}, "records": records}
    text = json.dumps(doc, indent=1, sort_keys=False)
    if per_example is not None:
        lines = [f" {json.dumps(b)}: {json.dumps(v)}" for b, v in per_example.items()]
        text = text[:-2] + ',\n "per_example": {\n' + ",\n".join(lines) + "\n }\n}"
    storage.write_text(path, text)


def format_table(records: list[dict]) -> str:
    lines = [f"{'benchmark':<22} {'metric':<12} {'value':>8} {'n':>6}  95% CI"]
    for r in records:
        lo, hi = r["ci"]
        lines.append(f"{r['benchmark']:<22} {r['metric']:<12} {r['value']:>8.4f} {r['n']:>6}  [{lo:.4f}, {hi:.4f}]")
    return "\n".join(lines)
