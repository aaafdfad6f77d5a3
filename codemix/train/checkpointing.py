"""Orbax checkpoints of a run: params, optimizer state, data iterator, metadata.

Layout of `<workdir>/checkpoints/<step>/`:
  params/     the model parameters (Orbax PyTree; what other runs init from)
  opt_state/  optimizer state, for exact resume
  data/       the tf.data iterator state, one file set per process
  meta/       JSON: step, tokens seen, tokens and repeated rows per source

There is exactly one way to start from another run: `load_params`, which reads
only `params/` (weights only; stages use it). Resuming the same run restores
everything (`Checkpointer.restore`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

ITEMS = ("params", "opt_state", "data", "meta")


@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
    iterator: Any


@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
    iterator: Any


class DataIteratorHandler(ocp.CheckpointHandler):
    """Saves each process's data iterator under data/process_<i>/ (T5X style)."""

    def save(self, directory: epath.Path, *args, **kwargs):
        a = kwargs.get("args", args[0] if args else None)
        a.iterator.save(os.fspath(directory / f"process_{jax.process_index()}"))

    def restore(self, directory: epath.Path, *args, **kwargs):
        a = kwargs.get("args", args[0] if args else None)
        a.iterator.restore(os.fspath(directory / f"process_{jax.process_index()}"))
        return a.iterator

    def metadata(self, directory: epath.Path):
        return None

    def finalize(self, directory: epath.Path):
        pass

    def close(self):
        pass


ocp.args.register_with_handler(DataIteratorHandler, for_save=True)(DataIteratorSave)
ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)(DataIteratorRestore)


def _abstract(tree, shardings):
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def absolute(path: str) -> str:
    """Local paths made absolute (Orbax refuses relative ones); URLs such as
    gs://bucket/run are returned unchanged."""
    return path if "://" in str(path) else os.path.abspath(path)


class Checkpointer:
    """Periodic async saves, keep-last-K, and automatic restore of the latest."""

    def __init__(self, workdir: str, save_every: int, keep: int, async_save: bool = True):
        self.directory = epath.Path(absolute(workdir)) / "checkpoints"
        options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(save_every, 1),
            max_to_keep=keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: dict, iterator, meta: dict, force: bool = False) -> bool:
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(state["params"]),
            opt_state=ocp.args.StandardSave(state["opt_state"]),
            data=DataIteratorSave(iterator),
            meta=ocp.args.JsonSave(meta),
        )
        saved = self.manager.save(step, args=args, force=force)
        if saved:
            logging.info("checkpoint: saving step %d to %s", step, self.directory)
        return saved

    def restore(self, step: int, abstract_state: dict, shardings: dict, iterator) -> tuple[dict, dict]:
        """Restore params, optimizer state, iterator position and meta at `step`."""
        saved = dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
        written_by = saved.get("process_count", 1)
        readers = iterator.global_batch_size // iterator.local_batch_size
        if written_by != readers:
            # Parameters would reshard, but each process's data-iterator state
            # (buffers included) belongs to that process.
            raise ValueError(
                f"checkpoint {self.directory / str(step)} was written by {written_by} processes and "
                f"this job has {readers}; relaunch with {written_by} processes to resume, "
                f"or start a new run from its weights with train.init_from."
            )
        args = ocp.args.Composite(
            params=ocp.args.StandardRestore(_abstract(abstract_state["params"], shardings["params"])),
            opt_state=ocp.args.StandardRestore(
                _abstract(abstract_state["opt_state"], shardings["opt_state"])
            ),
            data=DataIteratorRestore(iterator),
            meta=ocp.args.JsonRestore(),
        )
        out = self.manager.restore(step, args=args)
        state = {
            "step": jax.device_put(np.int32(step), shardings["step"]),
            "params": out.params,
            "opt_state": out.opt_state,
        }
        return state, dict(out.meta)

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def resolve_params_dir(path: str, step: int | None = None) -> epath.Path:
    """The `params/` directory for a run workdir, its checkpoints dir, a step
    dir, or a params dir itself. `step=None` picks the latest step."""
    p = epath.Path(absolute(path))
    if not p.exists():
        raise FileNotFoundError(f"init checkpoint {path!r} does not exist; pass a run workdir or step dir.")
    if (p / "_METADATA").exists() and p.name == "params":
        return p
    if (p / "params").exists():
        return p / "params"
    ckpt = p / "checkpoints" if (p / "checkpoints").exists() else p
    steps = sorted(int(c.name) for c in ckpt.iterdir() if c.name.isdigit() and (c / "params").exists())
    if not steps:
        raise FileNotFoundError(
            f"no finished checkpoint under {path!r} (looked for <step>/params in {ckpt})."
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"step {step} not in {path!r}; available steps: {steps}.")
    return ckpt / str(step) / "params"


def _flat_shapes(tree) -> dict[str, tuple]:
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        key = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        out[key] = tuple(leaf.shape)
    return out


def load_params(path: str, abstract_params: dict, shardings: dict, step: int | None = None) -> tuple[dict, int]:
    """Weights only, from another run (or an imported model). Checks every
    parameter's presence and shape first and names the first mismatch."""
    params_dir = resolve_params_dir(path, step)
    checkpointer = ocp.StandardCheckpointer()
    meta = checkpointer.metadata(params_dir)
    tree_meta = getattr(meta, "item_metadata", meta)
    theirs = _flat_shapes(tree_meta.tree if hasattr(tree_meta, "tree") else tree_meta)
    ours = _flat_shapes(abstract_params)
    for name, shape in ours.items():
        if name not in theirs:
            raise ValueError(
                f"init checkpoint {params_dir} has no parameter {name!r}; it was written by a "
                f"different architecture. Check the model gin against the parent run."
            )
        if tuple(theirs[name]) != shape:
            raise ValueError(
                f"init checkpoint {params_dir}: parameter {name!r} has shape {tuple(theirs[name])} "
                f"but this model expects {shape}. Use the parent run's model gin (or the same sizes)."
            )
    extra = sorted(set(theirs) - set(ours))
    if extra:
        raise ValueError(
            f"init checkpoint {params_dir} has parameters this model lacks: {extra[:5]}; "
            f"the model gin differs from the parent run's."
        )
    params = checkpointer.restore(params_dir, _abstract(abstract_params, shardings))
    step_dir = params_dir.parent
    src_step = int(step_dir.name) if step_dir.name.isdigit() else -1
    return params, src_step


def load_opt_state(path: str, abstract_opt_state, shardings, step: int | None = None):
    """The optimizer state of another run's checkpoint (cooldowns that carry
    Adam's moments). The optimizer must have the same structure."""
    params_dir = resolve_params_dir(path, step)
    opt_dir = params_dir.parent / "opt_state"
    if not opt_dir.exists():
        raise FileNotFoundError(
            f"{params_dir.parent} has no opt_state/ (an imported model or weights-only "
            f"checkpoint); set train.init_optimizer_from_parent = False."
        )
    try:
        return ocp.StandardCheckpointer().restore(opt_dir, _abstract(abstract_opt_state, shardings))
    except (ValueError, KeyError) as e:
        raise ValueError(
            f"optimizer state in {opt_dir} does not match this run's optimizer ({e}); use the "
            f"parent's optimizer settings or set train.init_optimizer_from_parent = False."
        ) from e
