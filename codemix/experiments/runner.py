"""Run an experiment: every run of every variant, in dependency order.

`codemix experiment run F --workdir DIR` reads the experiment gin F (which
binds `experiment.*`), expands its variants into unique runs (matrix.expand)
and, for each run in order:

  0. (before anything is written) compares every run that has a checkpoint
     with the configuration it would run under now (codemix/train/run_config.py)
     and refuses, naming each difference, unless --allow_config_change, which
     records the change in the run's lineage.json and reuses or resumes it;
  1. skips it if `DIR/runs/<run>/lineage.json` says it finished;
  2. writes lineage.json (variant(s), stage, parent run and the parent's
     checkpoint step, mixture, token budget and derived steps);
  3. trains it in this process with a fresh gin config made of the model gin,
     the runtime gin, `gin/stages/<kind>.gin` and the run's bindings; an
     interrupted run resumes from its own checkpoints;
  4. runs the quick evaluation (when configured) and marks the run finished.

Each run's gin is independent, so one process runs the whole matrix; JAX's
compilation cache is this machine's (codemix/train/compile_cache.py), so a new
experiment reuses what earlier ones compiled. Every run's time is charged to
phases (codemix/train/phases.py, in its run_info.json); the experiment ends
with their sums (summary.py).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence

from etils import epath
from etils.epath import Path

import codemix.registry  # noqa: F401  (registers the configurables a run's gin names)
import gin
from codemix import config as cm_config
from codemix.experiments import ladder  # noqa: F401  (registers ladder_matrix for experiment gins)
from codemix.experiments.matrix import Run, Variant, expand, final_run
from codemix.experiments.summary import format_phases, format_summary, summarize
from codemix.train.budget import steps_for

log = logging.getLogger(__name__)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Experiment:
    """What an experiment gin file binds.

    Attributes:
      name: experiment name (for reports).
      model_gin: model size file, e.g. "gin/models/tiny.gin".
      runtime_gin: runtime file (mesh, precision), e.g. "gin/runtime/cpu.gin".
      variants: the variants (usually @study_matrix()).
      batch_size: global rows per step, every stage.
      sequence_length: tokens per row, every stage.
      bindings: extra gin bindings for every run (e.g. "LR = 3e-3").
      stage_bindings: extra bindings per stage kind {"cooldown": [...], ...}.
      eval_benchmarks: benchmarks run after each stage ("" = none).
      eval_limit: examples per benchmark for that quick evaluation.
      eval_limits: per-benchmark overrides of eval_limit, e.g. {"humaneval": 20}.
      eval_max_new_tokens: cap on generated tokens per answer (None = each
        benchmark's own budget).
      eval_stages: "all" evaluates every run; "final" only runs that are the
        last stage of some variant (intermediate stages still log held-out
        metrics in the train loop).
      seeds: every variant runs once per seed; a seed sets both the
        initialisation and the data order (the SEED macro of the stage gins).
        Two or more seeds give the report seed standard deviations and
        intervals that include seed noise.
      write_report: write the analysis report at the end, when available.
    """

    name: str = "experiment"
    model_gin: str = gin.REQUIRED
    runtime_gin: str = "gin/runtime/cpu.gin"
    variants: Sequence[Variant] = gin.REQUIRED
    batch_size: int = gin.REQUIRED
    sequence_length: int = gin.REQUIRED
    bindings: Sequence[str] = ()
    stage_bindings: dict = dataclasses.field(default_factory=dict)
    eval_benchmarks: str = ""
    eval_limit: int = 20
    eval_limits: dict = dataclasses.field(default_factory=dict)
    eval_stages: str = "all"
    eval_max_new_tokens: int | None = None
    seeds: Sequence[int] = (0,)
    write_report: bool = True

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.sequence_length


def load_experiment(gin_file: str, gin_params: Sequence[str] = ()) -> Experiment:
    gin.clear_config()
    cm_config.parse([gin_file], gin_params, finalize=False)
    exp = Experiment()
    gin.clear_config()
    from codemix.experiments.matrix import check_seeds

    check_seeds(exp.seeds)
    if exp.eval_stages not in ("all", "final"):
        raise ValueError(f"Experiment.eval_stages = {exp.eval_stages!r}; use 'all' or 'final'.")
    return exp


def select(exp: Experiment, only: Sequence[str] | None) -> list[Variant]:
    if not only:
        return list(exp.variants)
    by_name = {v.name: v for v in exp.variants}
    unknown = [o for o in only if o not in by_name]
    if unknown:
        raise ValueError(
            f"unknown variant(s) {unknown} in --only; this experiment has: {sorted(by_name)}."
        )
    return [by_name[o] for o in only]


def run_bindings(exp: Experiment, run: Run, workdir: Path) -> list[str]:
    b = [
        f"MIXTURE = '{run.stage.mixture}'",
        f"TOKEN_BUDGET = {float(run.stage.tokens)!r}",
        f"BATCH_SIZE = {exp.batch_size}",
        f"SEQ_LEN = {exp.sequence_length}",
        f"SEED = {run.seed}",
    ]
    if run.parent:
        b.append(f"PARENT = '{run_dir(workdir, run.parent)}'")
    if run.stage.size:  # a ladder rung: its shape after the model gin (codemix/experiments/ladder.py)
        b += ladder.size_bindings(run.stage.size)
    return b + list(exp.bindings) + list(exp.stage_bindings.get(run.stage.kind, ()))


def run_dir(workdir: Path, name: str) -> Path:
    """A run's folder; epath keeps a URL a URL (pathlib makes gs://b into gs:/b)."""
    return epath.Path(workdir) / "runs" / name


def _is_writer() -> bool:
    """Only process 0 writes the experiment's own files (every process trains)."""
    import jax

    return jax.process_index() == 0


def _write_json(path: Path, obj) -> None:
    import jax

    if _is_writer():
        path.write_text(json.dumps(obj, indent=2))
    if jax.process_count() > 1:  # others read it next (e.g. a parent's lineage)
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"codemix:{path}")


def read_lineage(path: Path) -> dict | None:
    f = path / "lineage.json"
    return json.loads(f.read_text()) if f.exists() else None


def _write_lineage(path: Path, lineage: dict) -> None:
    """lineage.json, keeping the config_changes that train() (or an earlier attempt) recorded there."""
    on_disk = (read_lineage(path) or {}) if _is_writer() else {}
    if on_disk.get("config_changes"):
        lineage["config_changes"] = on_disk["config_changes"]
    _write_json(path / "lineage.json", lineage)


def _latest_step(path: Path) -> int | None:
    ckpt = path / "checkpoints"
    if not ckpt.exists():
        return None
    steps = [int(p.name) for p in ckpt.iterdir() if p.name.isdigit() and (p / "params").exists()]
    return max(steps) if steps else None


def parent_step_of(root: Path, r: Run) -> int | None:
    """The checkpoint step a run starts from; a clear error if its parent is not done."""
    if not r.parent:
        return None
    parent = read_lineage(run_dir(root, r.parent))
    step = _latest_step(run_dir(root, r.parent))
    if not parent or parent.get("status") != "finished":
        raise FileNotFoundError(
            f"run {r.name} needs its parent {r.parent}, which has not finished "
            f"(looked in {run_dir(root, r.parent)}); train the parent first: rerun the experiment, or "
            f"`codemix experiment run GIN --workdir {root} --run {r.parent}` (a submitted job graph "
            f"starts a run only after its parent's job succeeded)."
        )
    if step is None:
        raise FileNotFoundError(
            f"run {r.name} needs its parent {r.parent}, which is marked finished but has no "
            f"checkpoint in {run_dir(root, r.parent) / 'checkpoints'}; rerun the experiment: a finished "
            f"run without checkpoints is trained again before its children."
        )
    return step


def check_mixtures(variants: Sequence[Variant]) -> None:
    """Every stage's mixture exists (gin/mixtures/<name>.gin, a gin-bound
    mixture, or a registered SeqIO task/mixture), before anything trains."""
    import seqio

    from codemix.data import mixtures

    known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
    unknown = sorted({(s.mixture, v.name) for v in variants for s in v.stages
                      if s.mixture not in known and not mixtures.is_mixture(s.mixture)})
    if unknown:
        listed = ", ".join(f"{m!r} (variant {v})" for m, v in unknown)
        raise ValueError(
            f"unknown mixture(s) {listed}; known mixtures: {sorted(mixtures.available())}. "
            f"Add gin/mixtures/<name>.gin or fix the variant's stages."
        )


def plan(exp: Experiment, variants: Sequence[Variant]) -> list[dict]:
    """One row per run: name, parent, stage, mixture, tokens, steps, FLOPs
    (mixtures are checked first, so a dry run catches a typo in any stage)."""
    check_mixtures(variants)
    from codemix.model.config import ModelConfig
    from codemix.model.info import model_info

    infos = {}
    for size in sorted({s.size for v in variants for s in v.stages}):
        gin.clear_config()
        cm_config.parse([exp.model_gin], [*(ladder.size_bindings(size) if size else []), *exp.bindings],
                        finalize=False)
        infos[size] = model_info(ModelConfig(), exp.sequence_length)
    gin.clear_config()
    rows = []
    for r in expand(variants, exp.seeds):
        info = infos[r.stage.size]
        steps = steps_for(None, r.stage.tokens, exp.tokens_per_step)
        rows.append({
            "run": r.name,
            "seed": r.seed,
            "parent": r.parent,
            "stage": r.stage.kind,
            "mixture": r.stage.mixture,
            "tokens": float(r.stage.tokens),
            "steps": steps,
            "flops": info.flops_per_token * steps * exp.tokens_per_step,
            "params": info.total_params,
            "variants": list(r.variants),
        })
    return rows


def format_plan(rows: list[dict]) -> str:
    head = f"{'run':58s} {'parent':40s} {'tokens':>10s} {'steps':>8s} {'FLOPs':>10s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['run'][:58]:58s} {(r['parent'] or '-')[:40]:40s} {r['tokens']:10.3g} "
                     f"{r['steps']:8d} {r['flops']:10.3g}")
    lines.append(f"{len(rows)} runs, {sum(r['tokens'] for r in rows):.3g} tokens, "
                 f"{sum(r['flops'] for r in rows):.3g} FLOPs in total")
    return "\n".join(lines)


def _parse_run_gin(exp: Experiment, run: Run, workdir: Path, extra_params: Sequence[str]) -> None:
    gin.clear_config()
    files = [exp.model_gin, exp.runtime_gin, f"gin/stages/{run.stage.kind}.gin"]
    cm_config.parse(files, run_bindings(exp, run, workdir) + list(extra_params))


def _train_one(exp: Experiment, run: Run, workdir: Path, extra_params: Sequence[str], clock,
               allow_config_change: bool = False) -> dict:
    """Train one run with its own gin; its start-up (gin parsing) is charged to `clock` too."""
    with clock.phase("startup"):
        from codemix.train.trainer import train

        _parse_run_gin(exp, run, workdir, extra_params)
    try:
        return train(workdir=str(run_dir(workdir, run.name)), clock=clock, allow_config_change=allow_config_change)
    finally:
        gin.clear_config()


def check_run_configs(exp: Experiment, runs: Sequence[Run], root: Path, extra_params: Sequence[str],
                      allow: bool) -> None:
    """Every trained run's stored configuration against the one it would run under now
    (step 0 of the module docstring). RunConfigChanged, writing nothing, names each
    changed run and setting; with `allow`, each change goes to the run's lineage."""
    from codemix.errors import RunConfigChanged
    from codemix.train import run_config
    from codemix.train.trainer import configured_args

    changed = []
    for r in runs:
        path = run_dir(root, r.name)
        old = run_config.stored(path)
        if old is None or run_config.trained_step(path) is None:
            continue
        try:
            _parse_run_gin(exp, r, root, extra_params)
            now = run_config.identity(configured_args())
        finally:
            gin.clear_config()
        diff = run_config.differences(old, now)
        if diff:
            changed.append((r, path, now, diff))
    if not changed:
        return
    if allow:
        for r, path, now, _ in changed:
            if _is_writer():
                run_config.check(path, now, allow=True)
        return
    shown = "\n".join(f"- {r.name} (trained to step {run_config.trained_step(path)}):\n"
                      f"{run_config.format_differences(diff, '    ')}" for r, path, _, diff in changed[:3])
    more = f"\n- and {len(changed) - 3} more run(s)" if len(changed) > 3 else ""
    raise RunConfigChanged(
        f"{len(changed)} run(s) of {root} were trained with another configuration than this experiment now "
        f"gives them; reusing them would report results of the old configuration as the new one's. Nothing "
        f"was written.\n{shown}{more}\nRun the new configuration in a new --workdir (or rename the experiment's "
        f"runs), rerun with the settings the runs were trained with, or pass --allow_config_change to reuse "
        f"and resume these runs anyway (each change is recorded in the run's lineage.json).")


def _evaluate(exp: Experiment, path: Path) -> dict | None:
    """The quick per-stage evaluation (exp.eval_benchmarks, exp.eval_limit)."""
    if not exp.eval_benchmarks:
        return None
    from codemix.eval import tasks
    from codemix.eval.loading import load_model_for_eval
    from codemix.eval.runner import EvalSettings, Evaluator, write_results
    from codemix.eval.sandbox import Sandbox, SandboxUnavailable

    names = tasks.resolve_names([n for n in exp.eval_benchmarks.split(",") if n])
    sandbox = None
    if any(tasks.get_benchmark(n).kind == "code" for n in names):
        try:
            sandbox = Sandbox()
        except SandboxUnavailable as e:
            skipped = [n for n in names if tasks.get_benchmark(n).kind == "code"]
            log.warning("skipping code benchmarks %s: %s", skipped, e)
            names = [n for n in names if n not in skipped]
    gin.clear_config()
    try:
        cfg, params, vocab, info = load_model_for_eval(str(path))
        start = time.perf_counter()
        limits = {**{n: exp.eval_limit for n in names}, **dict(exp.eval_limits)}
        settings = EvalSettings(progress=False, max_new_tokens=exp.eval_max_new_tokens)
        out = Evaluator(cfg, params, vocab, settings, sandbox).run_full(
            names, limits, run_name=path.name, step=info.step)
        records, seconds = out.records, out.seconds
    finally:
        gin.clear_config()
    doc = {"limit": exp.eval_limit, "limits": limits, "seconds": seconds, "total_seconds": time.perf_counter() - start}
    if _is_writer():
        write_results(str(path / "eval.json"), records, doc, out.per_example)
    return {"records": records, **doc}


def run_experiment(
    gin_file: str,
    workdir: str,
    only: Sequence[str] | None = None,
    gin_params: Sequence[str] = (),
    run_params: Sequence[str] = (),
    progress: bool = True,
    allow_config_change: bool = False,
    run: str | None = None,
) -> dict:
    """Run (or resume) the experiment; returns {run name: lineage}. A run trained
    under another configuration is refused unless `allow_config_change`. With
    `run`, only that run trains (one job of a job graph, jobs.py): it is refused,
    naming the parent, while its parent has not finished, and the experiment's
    summary and report are left to `codemix experiment status` and `codemix report`."""
    exp = load_experiment(gin_file, gin_params)
    variants = select(exp, only)
    runs = expand(variants, exp.seeds)
    if run is not None:
        from codemix.experiments.jobs import pick_run

        runs = [pick_run(runs, run, gin_file)]
    from codemix import storage

    storage.check(workdir)  # a gs:// bucket that can't be used: one StorageError before any work
    root = epath.Path(workdir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"experiment workdir {root} is a file; pass a directory (it is created "
                                 f"if missing) or move the file away.")
    check_run_configs(exp, runs, root, run_params, allow_config_change)
    root.mkdir(parents=True, exist_ok=True)
    from codemix.train import compile_cache, phases
    from codemix.train.workdir import ensure_directory

    compile_cache.compilation_cache()  # env / default here; a run's gin may rebind it
    if run is None or not (root / "plan.json").exists():  # one job of many: the plan is written once
        _write_json(root / "plan.json", plan(exp, variants))
    results: dict[str, dict] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(runs), desc=exp.name, unit="run")
    for r in runs:
        path = run_dir(root, r.name)
        lineage = read_lineage(path)
        if lineage and lineage.get("status") == "finished" and _latest_step(path) is None:
            log.warning("%s is marked finished but has no checkpoint in %s/checkpoints; training it again",
                        r.name, path)
            lineage = None
        if lineage and lineage.get("status") == "finished":
            log.info("skip %s: finished", r.name)
            results[r.name] = lineage
            if bar is not None:
                bar.update(1)
            continue
        parent_step = parent_step_of(root, r)
        ensure_directory(path, "run directory")
        lineage = {
            "experiment": exp.name,
            "run": r.name,
            "variants": list(r.variants),
            "stage": r.stage.kind,
            "mixture": r.stage.mixture,
            "token_budget": float(r.stage.tokens),
            "steps": steps_for(None, r.stage.tokens, exp.tokens_per_step),
            "tokens_per_step": exp.tokens_per_step,
            "parent": r.parent,
            "seed": r.seed,
            "parent_dir": str(run_dir(root, r.parent)) if r.parent else None,
            "parent_step": parent_step,
            "status": "running",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        _write_lineage(path, lineage)
        if bar is not None:
            bar.set_postfix_str(r.name[:40])
        clock = phases.PhaseClock()
        try:
            summary = _train_one(exp, r, root, run_params, clock, allow_config_change)
            lineage.update(status="trained", final_step=summary["step"], tokens_seen=summary["tokens"])
            _write_lineage(path, lineage)
            is_final = any(final_run(v, r.seed) == r.name for v in variants)
            with clock.phase("benchmark_eval"):
                evaluation = _evaluate(exp, path) if exp.eval_stages == "all" or is_final else None
            phases.record(str(path), clock)
        finally:
            clock.close()
        lineage.update(status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        if evaluation is not None:
            lineage["eval"] = "eval.json"
        elif exp.eval_benchmarks:
            lineage["eval_skipped"] = "not a variant's final stage (Experiment.eval_stages = 'final')"
        _write_lineage(path, lineage)
        results[r.name] = lineage
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if run is not None:
        return results
    summary_rows = summarize(root, variants, exp.seeds)
    _write_json(root / "summary.json", summary_rows)
    print(format_summary(summary_rows))
    print(format_phases(root, [r.name for r in runs]))
    if exp.write_report and _is_writer():
        _report(root)
    return results


def _report(root: Path) -> None:
    try:
        from codemix.analysis.report import write_report
    except ImportError:
        log.info("analysis package not available; no report written")
        return
    path = write_report(str(root))
    print(f"report: {path}")
