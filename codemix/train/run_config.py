"""What a run is: the configuration that decides what it trains, kept with the run.

`identity()` reads the current gin configuration and returns, as text, every
setting that changes what is trained (model, data, optimizer, schedule,
batch, seed), macros resolved:

  ModelConfig.<field>   every field of the model config (defaults included)
  train.<param>         the TRAIN_PARAMS of train() (defaults included)
  <configurable>.<p>    every other gin binding (make_train_iterator.*,
                        make_schedule.*, make_optimizer.*, mixture specs,
                        corpus options, ...), except NOT_TRAINING: how and
                        where a run executes (mesh, sharding, compilation
                        cache, checkpoint and log cadence), what it measures
                        (held-out sets, eval hooks), where files are kept

`train()` stores it in `<workdir>/training_config.json` when the run starts
from scratch, and every later start compares: a run that has a checkpoint and
a stored configuration that differs is refused (RunConfigChanged, naming
every difference and the fix) before anything is written to it, unless the
caller allows the change; an allowed change is appended to the run's
`lineage.json` ("config_changes") and becomes the stored configuration. The
experiment runner does the same comparison for finished runs before it
reuses them (it parses each run's gin and calls `identity()` with
trainer.configured_args(), which does not train).

Extending a run by raising its steps is a change of the schedule (its length
is the run's length) unless `train.schedule_steps` is set: then
train.train_steps and train.token_budget are not part of the identity.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time

from etils import epath

import gin
from codemix import storage
from codemix.errors import RunConfigChanged

log = logging.getLogger(__name__)

CONFIG_FILE = "training_config.json"
LINEAGE_FILE = "lineage.json"

# train()'s parameters that change what is trained. Not: init_from (a path;
# the parent is in the lineage, and a run with its own checkpoint ignores it),
# grad_accum_steps (the same global batch), the cadence, logging, eval and
# component parameters.
TRAIN_PARAMS = ("seed", "train_steps", "token_budget", "schedule_steps", "init_from_step",
                "init_optimizer_from_parent")
# Configurables (by their short name) none of whose bindings change what is trained.
NOT_TRAINING = frozenset({
    "make_mesh", "logical_axis_rules", "compilation_cache", "HeldOutOptions", "EvalHook", "eval_vocabulary",
    "Experiment", "study_matrix", "chain", "variant_list",
})
# Single parameters that don't: where files live, which process reads what, memory trade-offs.
NOT_TRAINING_PARAMS = frozenset({
    "make_train_iterator.cache_dir", "make_train_iterator.process_count", "make_train_iterator.process_index",
    "CorpusOptions.data_dir", "VocabOptions.cache_dir", "ModelConfig.remat",
})


def _resolve(value, depth: int = 0):
    """`value` with macro references (%NAME) replaced by their values."""
    if depth > 16:
        return value
    if isinstance(value, gin.config.ConfigurableReference) and value.scoped_selector.endswith("gin.macro"):
        return _resolve(gin.query_parameter(value.scoped_selector + ".value"), depth + 1)
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, depth + 1) for k, v in value.items()}
    return value


def _text(value) -> str:
    return repr(value)


def _model_fields(model) -> dict[str, str]:
    from codemix.model.config import ModelConfig

    model = model if model is not None else ModelConfig()
    return {f"ModelConfig.{k}": _text(v) for k, v in dataclasses.asdict(model).items()
            if f"ModelConfig.{k}" not in NOT_TRAINING_PARAMS}


def identity(train_args: dict) -> dict[str, str]:
    """The training-relevant settings of the current gin config (see the module
    docstring). `train_args`: train()'s arguments (trainer.configured_args()
    resolves them from gin without training, for the runner)."""
    out = _model_fields(train_args.get("model"))
    for p in TRAIN_PARAMS:
        if p in ("train_steps", "token_budget") and train_args.get("schedule_steps"):
            continue
        out[f"train.{p}"] = _text(train_args.get(p))
    # gin keeps no public list of bindings; _CONFIG is {(scope, selector): {param: value}}.
    for (scope, selector), params in gin.config._CONFIG.items():
        name = selector.rsplit(".", 1)[-1]
        if selector == "gin.macro" or name in NOT_TRAINING or name in ("train", "ModelConfig"):
            continue
        for param, value in params.items():
            key = f"{scope + '/' if scope else ''}{name}.{param}"
            if f"{name}.{param}" not in NOT_TRAINING_PARAMS:
                out[key] = _text(_resolve(value))
    return dict(sorted(out.items()))


def stored(workdir) -> dict[str, str] | None:
    """The configuration stored with a run, or None (a new run, or one from before this file)."""
    path = epath.Path(workdir) / CONFIG_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise RunConfigChanged(f"{path} is not valid JSON ({e}); restore it from a copy, or delete it to "
                               f"resume the run unchecked under the current configuration.") from e
    return doc.get("bindings") if isinstance(doc, dict) else None


def store(workdir, bindings: dict[str, str]) -> None:
    path = epath.Path(workdir) / CONFIG_FILE
    storage.write_text(path, json.dumps({"bindings": bindings}, indent=1, sort_keys=True))


def differences(old: dict[str, str], new: dict[str, str]) -> dict[str, list]:
    """{setting: [stored value or None, current value or None]} for every setting that differs."""
    return {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def format_differences(diff: dict[str, list], indent: str = "  ") -> str:
    def show(v):
        return "not set (its default)" if v is None else v

    return "\n".join(f"{indent}{k}: {show(a)} when trained, {show(b)} now" for k, (a, b) in diff.items())


def trained_step(workdir) -> int | None:
    """The newest checkpoint step under `<workdir>/checkpoints` (read-only; None if none)."""
    ckpt = epath.Path(workdir) / "checkpoints"
    if not ckpt.is_dir():
        return None
    steps = [int(p.name) for p in ckpt.iterdir() if p.name.isdigit()]
    return max(steps) if steps else None


def record_change(workdir, diff: dict[str, list], step: int | None, by: str) -> None:
    """Append an allowed change to the run's lineage.json ("config_changes")."""
    path = epath.Path(workdir) / LINEAGE_FILE
    try:
        lineage = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        lineage = {}
    if not isinstance(lineage, dict):
        lineage = {}
    lineage.setdefault("config_changes", []).append({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "at_step": step, "allowed_by": by,
        "changes": {k: {"before": a, "after": b} for k, (a, b) in diff.items()}})
    storage.write_text(path, json.dumps(lineage, indent=2))


_LENGTH_HINT = (" (A run's length is its schedule's length; to be able to extend a run, set train.schedule_steps "
                "when it starts.)")


def check(workdir, current: dict[str, str], allow: bool, what: str = "run", fix: str | None = None,
          write: bool = True) -> None:
    """Refuse (RunConfigChanged) to resume or reuse a trained run under another
    configuration; with `allow`, record the change in its lineage. Then
    `current` is the stored configuration. Writes nothing when it refuses
    (nor when not `write`: the processes of a multi-host job other than 0)."""
    old, step = stored(workdir), trained_step(workdir)
    if step is not None and old is None and (epath.Path(workdir) / "metrics.jsonl").exists():
        log.warning("%s has checkpoints but no %s (trained before codemix stored it): its configuration "
                    "can't be compared; resuming under the current one.", workdir, CONFIG_FILE)
    diff = differences(old, current) if old is not None and step is not None else {}
    if diff and not allow:
        fix = fix or ("train in a new --workdir, or pass --allow_config_change to continue this run under "
                      "the new configuration (the change is recorded in its lineage.json)")
        raise RunConfigChanged(
            f"{what} {workdir} was trained (to step {step}) with a different configuration; resuming or "
            f"reusing it would mix two configurations in one run. {len(diff)} difference(s):\n"
            f"{format_differences(diff)}\nTo keep it, rerun with the settings it was trained with; otherwise "
            f"{fix}.{_LENGTH_HINT if {'train.train_steps', 'train.token_budget'} & set(diff) else ''}")
    if not write:
        return
    if diff:
        log.warning("%s: continuing under a changed configuration (--allow_config_change):\n%s", workdir,
                    format_differences(diff))
        record_change(workdir, diff, step, "--allow_config_change")
    if old != current:
        store(workdir, current)
