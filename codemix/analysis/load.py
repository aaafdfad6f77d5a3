"""Load an experiment workdir into pandas DataFrames.

An experiment directory (written by `codemix experiment run`) holds plan.json
and one directory per run under runs/. `load_experiment` reads every source a
run leaves behind and returns them as tidy tables:

  runs      one row per run: lineage (stage, mixture, parent, status, steps,
            tokens), depth in its chain, seed, and which files exist.
  chains    one row per (variant, run): a variant's runs in stage order
            (stage_index 0 = init). Several runs of one variant at the same
            stage_index are seeds of that stage.
  metrics   metrics.jsonl of every run, one row per logged step (wide: the
            columns are the logged keys), plus `run`.
  losses    the per-source losses of `metrics`, tidy: run, step, tokens,
            source, loss, source_tokens.
  evals     every eval.json record, plus ci_low/ci_high and `primary` (the
            metric that enters the category mean).
  shares    per run and source: requested share, realized share and tokens.
  configs   operative_config.gin of every run, one row per run, one column
            per binding (values as written in the file).
  heldout   held-out loss and bits per byte per family (heldout/step_<N>.json
            of every run), tidy: run, step, family, loss, bpb, tokens, bytes.
  examples  per-example values for paired statistics, tidy: run, benchmark,
            metric, id, value. Benchmarks come from eval.json's
            "per_example"; held-out families appear as benchmark
            "heldout:<family>" with metric "bpb" (per-document contributions
            of the run's last held-out evaluation, see codemix/eval/perplexity.py).

Runs that the plan expects but that did not finish, or that left no metrics
or no evaluation, are listed in `missing` (never silently dropped); so is
every damaged file a run left (a torn metrics line, a JSON file of the wrong
shape): its entry names the file, what was skipped and the fix (run_files.py).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re

import pandas as pd
from etils.epath import Path

from codemix.analysis.run_files import FIXES, check_run_info, read_metrics, read_object

log = logging.getLogger(__name__)

# Fallback when the eval suite cannot be imported: the metric kinds in order of
# preference (code, generation, multiple choice).
_FALLBACK_METRICS = ("pass@1", "exact_match", "acc")


@dataclasses.dataclass
class ExperimentData:
    """Everything one experiment directory holds, as DataFrames (see module doc)."""

    root: Path
    name: str
    plan: pd.DataFrame
    runs: pd.DataFrame
    chains: pd.DataFrame
    metrics: pd.DataFrame
    losses: pd.DataFrame
    evals: pd.DataFrame
    shares: pd.DataFrame
    configs: pd.DataFrame
    missing: list[dict]
    heldout: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    examples: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    corpora: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)  # run, family, fingerprint, sources

    @property
    def variants(self) -> list[str]:
        """Variant names in plan order."""
        return list(dict.fromkeys(self.chains["variant"])) if len(self.chains) else []

    def final_runs(self) -> pd.DataFrame:
        """One row per (variant, seed run) of each variant's last stage."""
        if not len(self.chains):
            return self.chains
        last = self.chains.groupby("variant")["stage_index"].transform("max")
        return self.chains[self.chains["stage_index"] == last].reset_index(drop=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete or rewrite it.") from e


def _read_plan(path: Path) -> list[dict]:
    """plan.json: a list of {"run": name, ...}; a clear error otherwise (the report needs it whole)."""
    plan = _read_json(path)
    if plan is None:
        return []
    bad = next((r for r in plan if not (isinstance(r, dict) and isinstance(r.get("run"), str))), None) \
        if isinstance(plan, list) else plan
    if bad is not None or not isinstance(plan, list):
        raise ValueError(f"{path} must be a list of runs ({{\"run\": name, ...}}) but holds "
                         f"{json.dumps(bad)[:80]}; rerun `codemix experiment run` with the same --workdir "
                         f"(it rewrites plan.json; finished runs are kept) or delete the file.")
    return plan


_GIN_LINE = re.compile(r"^([A-Za-z_][\w./@%-]*)\s*=\s*(.*)$")


def parse_gin(text: str) -> dict[str, str]:
    """`name = value` bindings of an operative config (values as text).

    Values continued on following lines (lists, dicts) are joined into one
    line; comments and include/import lines are skipped. A value that is just
    a macro (`train.seed = %SEED`) is replaced by the macro's value.
    """
    out: dict[str, str] = {}
    key, parts, depth = None, [], 0
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith("#"):
            continue
        if key is not None:
            parts.append(line.strip())
            depth += line.count("[") + line.count("(") + line.count("{")
            depth -= line.count("]") + line.count(")") + line.count("}")
            if depth <= 0:
                out[key] = " ".join(p for p in parts if p)
                key, parts = None, []
            continue
        m = _GIN_LINE.match(line.strip())
        if not m or line.startswith((" ", "\t")):
            continue
        name, value = m.group(1), m.group(2).strip()
        depth = value.count("[") + value.count("(") + value.count("{")
        depth -= value.count("]") + value.count(")") + value.count("}")
        if depth > 0 or value.endswith("\\"):
            key, parts = name, [value.rstrip("\\").strip()]
        else:
            out[name] = value
    if key is not None:
        out[key] = " ".join(parts)
    for _ in range(8):  # macros of macros
        changed = False
        for k, v in out.items():
            if v.startswith("%") and v[1:] in out and out[v[1:]] != v:
                out[k], changed = out[v[1:]], True
        if not changed:
            break
    return out


def _seed(bindings: dict[str, str]) -> int:
    for k in ("train.seed",):
        if k in bindings:
            try:
                return int(bindings[k])
            except ValueError:
                pass
    return 0


_PRIMARY: dict[str, str] | None = None


def primary_metrics() -> dict[str, str]:
    """{benchmark: primary metric} from the eval suite's registry (imported once)."""
    global _PRIMARY
    if _PRIMARY is None:
        try:
            from codemix.eval import tasks

            _PRIMARY = {n: b.primary_metric for n, b in tasks.BENCHMARKS.items()}
        except Exception as e:  # noqa: BLE001 - analysis must work without the eval stack
            log.warning("cannot import the benchmark registry (%s); guessing primary metrics", e)
            _PRIMARY = {}
    return _PRIMARY


def _mark_primary(evals: pd.DataFrame) -> pd.Series:
    """The metric entering each benchmark's category mean.

    Records may carry `primary` themselves; otherwise the registry says; for an
    unregistered benchmark the first of _FALLBACK_METRICS it has is used.
    """
    if "primary" in evals.columns and evals["primary"].notna().all():
        return evals["primary"].astype(bool)
    registry = primary_metrics()
    primary = pd.Series(False, index=evals.index)
    for bench, rows in evals.groupby("benchmark"):
        if bench.startswith("category:"):
            continue
        metric = registry.get(bench)
        if metric is None:
            have = set(rows["metric"])
            metric = next((m for m in _FALLBACK_METRICS if m in have), min(have))
        primary[rows.index] = rows["metric"] == metric
    return primary


def _chains(plan: list[dict], lineages: dict[str, dict], bindings: dict[str, dict]) -> pd.DataFrame:
    """(variant, run, stage_index) rows from plan.json and the runs' lineage."""
    parent = {r["run"]: r.get("parent") for r in plan}
    owners: dict[str, list[str]] = {r["run"]: list(r.get("variants", [])) for r in plan}
    stage = {r["run"]: r.get("stage") for r in plan}
    for name, lin in lineages.items():
        parent.setdefault(name, lin.get("parent"))
        stage.setdefault(name, lin.get("stage"))
        for v in lin.get("variants", []):
            owners.setdefault(name, [])
            if v not in owners[name]:
                owners[name].append(v)

    def depth(run: str) -> int:
        d, seen = 0, set()
        while parent.get(run) and run not in seen:
            seen.add(run)
            run, d = parent[run], d + 1
        return d

    rows = []
    for run, vs in owners.items():
        for v in vs:
            rows.append({"variant": v, "stage_index": depth(run), "stage": stage.get(run), "run": run,
                         "seed": _seed(bindings.get(run, {}))})
    if not rows:
        return pd.DataFrame(columns=["variant", "stage_index", "stage", "run", "seed"])
    order = {v: i for i, v in enumerate(dict.fromkeys(r["variant"] for r in rows))}
    df = pd.DataFrame(rows)
    df["_o"] = df["variant"].map(order)
    return df.sort_values(["_o", "stage_index", "seed", "run"]).drop(columns="_o").reset_index(drop=True)


def load_experiment(path: str | Path) -> ExperimentData:
    """Read experiment directory `path` (see the module docstring for the tables)."""
    from codemix import storage

    storage.check(path)  # a gs:// bucket that can't be used: one StorageError
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"experiment directory {root} does not exist; pass the --workdir "
                                f"of `codemix experiment run`.")
    plan = _read_plan(root / "plan.json")
    run_dirs = sorted(p for p in (root / "runs").iterdir() if p.is_dir()) if (root / "runs").is_dir() else []
    if not plan and not run_dirs:
        raise FileNotFoundError(f"{root} holds neither plan.json nor runs/; is it an experiment workdir?")
    names = list(dict.fromkeys([r["run"] for r in plan] + [p.name for p in run_dirs]))

    lineages, bindings = {}, {}
    run_rows, metric_rows, share_rows, eval_frames, config_rows, missing = [], [], [], [], [], []
    heldout_rows, example_frames, corpus_rows = [], [], []
    planned = {r["run"]: r for r in plan}
    exp_name = root.name
    for name in names:
        d = root / "runs" / name
        file_problems: list[str] = []
        lin = _lineage(d / "lineage.json", file_problems)
        info = read_object(d / "run_info.json", file_problems)
        info = check_run_info(d / "run_info.json", info, file_problems) if info is not None else {}
        gin_text = (d / "operative_config.gin").read_text() if (d / "operative_config.gin").exists() else ""
        b = parse_gin(gin_text)
        metrics = read_metrics(d / "metrics.jsonl", file_problems, (lin or {}).get("final_step"))
        ev = _eval(d / "eval.json", file_problems)
        if lin:
            lineages[name] = lin
            exp_name = lin.get("experiment", exp_name)
        bindings[name] = b
        p = planned.get(name, {})
        status = (lin or {}).get("status", "not started")
        variants = (lin or {}).get("variants") or p.get("variants", [])
        last = metrics[-1] if metrics else {}
        run_rows.append({
            "run": name, "stage": (lin or {}).get("stage", p.get("stage")),
            "mixture": (lin or {}).get("mixture", p.get("mixture")),
            "parent": (lin or {}).get("parent", p.get("parent")), "variants": variants,
            "status": status, "steps": (lin or {}).get("steps", p.get("steps")),
            "final_step": last.get("step"),
            "token_budget": (lin or {}).get("token_budget", p.get("tokens")),
            "tokens": last.get("tokens"), "final_loss": last.get("loss"), "seed": _seed(b),
            "params": info.get("params"), "has_metrics": bool(metrics), "has_eval": ev is not None,
        })
        problems = []
        if status != "finished":
            problems.append("not started" if lin is None else f"status {status!r} (partial)")
        if not metrics and lin is not None:
            problems.append("no metrics.jsonl")
        if ev is None and status == "finished" and not (lin or {}).get("eval_skipped"):
            problems.append("no eval.json")
        problems += file_problems
        if problems:
            missing.append({"run": name, "variants": list(variants), "problem": "; ".join(problems)})
        for m in metrics:
            metric_rows.append({"run": name, **m})
        for fam, prov in (info.get("corpora") or {}).items():
            if isinstance(prov, dict):
                srcs = prov.get("sources") or []
                corpus_rows.append({"run": name, "family": fam, "config": prov.get("config"),
                                    "fingerprint": prov.get("fingerprint"),
                                    "sources": ", ".join(f"{s.get('name')}=={s.get('version')}" for s in srcs
                                                         if isinstance(s, dict)) or prov.get("raw", "")})
        sources = info.get("sources", [])
        requested = info.get("requested_shares", [None] * len(sources))
        total = sum(float(last.get(f"tokens/{s}", 0.0)) for s in sources)
        for s, req in zip(sources, requested):
            tok = float(last.get(f"tokens/{s}", 0.0)) if last else float("nan")
            share_rows.append({"run": name, "source": s, "requested": req, "tokens": tok,
                               "realized": tok / total if total else float("nan")})
        final_heldout = None
        for step, doc in _heldout_files(d, file_problems):
            for fam, r in doc.get("families", {}).items():
                heldout_rows.append({"run": name, "step": step, "family": fam, "loss": r.get("loss"),
                                     "bpb": r.get("bpb"), "tokens": r.get("tokens"), "bytes": r.get("bytes")})
            final_heldout = doc
        if final_heldout is not None:
            for fam, r in final_heldout.get("families", {}).items():
                if r.get("ids") and r.get("doc_bpb"):
                    example_frames.append(pd.DataFrame({
                        "run": name, "benchmark": f"heldout:{fam}", "metric": "bpb",
                        "id": [str(i) for i in r["ids"]], "value": r["doc_bpb"]}))
        for bench, values in ((ev or {}).get("per_example") or {}).items():
            ids = [str(i) for i in values.get("ids", [])]
            for metric, vals in values.items():
                if metric == "ids" or len(vals) != len(ids):
                    continue
                example_frames.append(pd.DataFrame({"run": name, "benchmark": bench, "metric": metric,
                                                    "id": ids, "value": pd.to_numeric(vals, errors="coerce")}))
        if ev is not None:
            recs = pd.DataFrame(ev.get("records", []))
            if len(recs):
                recs["record_run"] = recs.get("run")
                recs["run"] = name
                eval_frames.append(recs)
        if b:
            config_rows.append({"run": name, **b})

    runs = pd.DataFrame(run_rows)
    chains = _chains(plan, lineages, bindings)
    if len(chains):
        runs = runs.merge(chains.groupby("run")["stage_index"].first().rename("stage_index"),
                          left_on="run", right_index=True, how="left")
    metrics_df = pd.DataFrame(metric_rows)
    losses = _losses(metrics_df)
    evals = pd.concat(eval_frames, ignore_index=True) if eval_frames else pd.DataFrame(
        columns=["run", "step", "benchmark", "category", "metric", "value", "n", "ci"])
    if len(evals):
        ci = evals["ci"].apply(lambda c: c if isinstance(c, (list, tuple)) and len(c) == 2 else [None, None])
        evals["ci_low"] = pd.to_numeric(ci.str[0], errors="coerce")
        evals["ci_high"] = pd.to_numeric(ci.str[1], errors="coerce")
        evals["value"] = pd.to_numeric(evals["value"], errors="coerce")
        evals["primary"] = _mark_primary(evals)
    else:
        evals = evals.assign(ci_low=[], ci_high=[], primary=[])
    return ExperimentData(
        root=root, name=exp_name, plan=pd.DataFrame(plan), runs=runs, chains=chains,
        metrics=metrics_df, losses=losses, evals=evals,
        shares=pd.DataFrame(share_rows, columns=["run", "source", "requested", "tokens", "realized"]),
        configs=pd.DataFrame(config_rows), missing=missing,
        heldout=pd.DataFrame(heldout_rows, columns=["run", "step", "family", "loss", "bpb", "tokens", "bytes"]),
        examples=(pd.concat(example_frames, ignore_index=True) if example_frames else
                  pd.DataFrame(columns=["run", "benchmark", "metric", "id", "value"])),
        corpora=pd.DataFrame(corpus_rows, columns=["run", "family", "config", "fingerprint", "sources"]),
    )


def _heldout_files(run_dir: Path, problems: list[str]) -> list[tuple[int, dict]]:
    """(step, document) of every heldout/step_<N>.json of a run, by step."""
    d = run_dir / "heldout"
    if not d.is_dir():
        return []
    out = []
    for p in d.glob("step_*.json"):
        try:
            step = int(p.stem.split("_", 1)[1])
        except ValueError:
            continue
        doc = read_object(p, problems)
        if doc is not None and not isinstance(doc.get("families"), dict):
            problems.append(f"{p}: families is {json.dumps(doc.get('families'))[:40]}, not an object of "
                            f"family results: ignored. {FIXES['heldout']}.")
            doc = None
        if doc is not None:
            out.append((step, doc))
    return sorted(out, key=lambda x: x[0])


def _lineage(path: Path, problems: list[str]) -> dict | None:
    """lineage.json, with a `variants` that is not a list of names dropped (and named)."""
    lin = read_object(path, problems)
    if lin is not None and "variants" in lin and not (
            isinstance(lin["variants"], list) and all(isinstance(v, str) for v in lin["variants"])):
        problems.append(f"{path}: variants is {json.dumps(lin['variants'])[:40]}, not a list of variant names: "
                        f"the plan's are used. {FIXES['lineage.json']}.")
        lin = {k: v for k, v in lin.items() if k != "variants"}
    return lin


def _eval(path: Path, problems: list[str]) -> dict | None:
    """eval.json, ignored (and named) when its records are not a list of objects."""
    ev = read_object(path, problems)
    records = (ev or {}).get("records", [])
    if ev is not None and not (isinstance(records, list) and all(isinstance(r, dict) for r in records)):
        problems.append(f"{path}: records is not a list of result objects: ignored. {FIXES['eval.json']}.")
        return None
    return ev


def _losses(metrics: pd.DataFrame) -> pd.DataFrame:
    cols = ["run", "step", "tokens", "source", "loss", "source_tokens"]
    if not len(metrics):
        return pd.DataFrame(columns=cols)
    sources = sorted(c.split("/", 1)[1] for c in metrics.columns if c.startswith("loss/"))
    parts = [metrics[["run", "step", "tokens", "loss"]].assign(source="all", source_tokens=metrics["tokens"])]
    for s in sources:
        tok = metrics[f"tokens/{s}"] if f"tokens/{s}" in metrics.columns else float("nan")
        parts.append(pd.DataFrame({"run": metrics["run"], "step": metrics["step"], "tokens": metrics["tokens"],
                                   "source": s, "loss": metrics[f"loss/{s}"], "source_tokens": tok}))
    out = pd.concat(parts, ignore_index=True)[cols]
    return out.dropna(subset=["loss"]).reset_index(drop=True)
