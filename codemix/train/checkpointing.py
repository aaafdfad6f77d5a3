"""Orbax checkpoints of a run: params, optimizer state, data iterator, metadata.

Layout of `<workdir>/checkpoints/<step>/`:
  params/     the model parameters (Orbax PyTree; what other runs init from)
  opt_state/  optimizer state, for exact resume
  data/       the global data position (position.json) and each data lane's
              tf.data state (lane_<l>/), restorable with any process count
  meta/       JSON: step, tokens seen, tokens and repeated rows per source
  checksums.json  size and SHA-256 of every file in the four folders above

There is exactly one way to start from another run: `load_params`, which reads
only `params/` (weights only; stages use it). Resuming the same run restores
everything (`Checkpointer.restore_latest`).

Integrity (checkpoint_integrity.py): every finished step gets a manifest of
its files' sizes and SHA-256, computed by process 0 in a background thread
once Orbax has committed the step, so a save blocks the training thread only
for Orbax's own part (waiting for the previous write, the device-to-host
copy); `close()` waits for the last hashes. Restore checks the manifest
first (process 0 reads, every process gets the verdict), and a corrupt
newest checkpoint is moved to `<workdir>/checkpoints_corrupt/` and the next
older one is tried, with the number of steps that will be redone logged.

Retention (`keep`) is done here, not by Orbax: the newest `keep` steps are
kept, and so is the newest verified one even when newer, not yet verified
steps exist, and so is every step still being hashed. With several
processes, process 0 (which hashes) broadcasts what it protects, so that
every process deletes the same steps (Orbax's delete is collective).
`Checkpointer.save` refuses to write a non-finite state (see guards.py).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from codemix import pytree
from codemix.model import layer_stack
from codemix.train import guards
from codemix.train.checkpoint_integrity import (  # also the names tests and callers use from here
    ITEMS,
    MANIFEST,
    CorruptCheckpoint,
    first_line,
    verify_checkpoint,  # noqa: F401  (tests check manifests through this module)
    verify_shared,
    write_manifest,
)
from codemix.train.guards import NonFiniteLoss, stop_if_non_finite  # noqa: F401  (the trainer's entry points)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
    iterator: Any


@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
    iterator: Any


class DataIteratorHandler(ocp.CheckpointHandler):
    """Saves the data position under data/: each process writes its own
    lanes' states, process 0 the global position.json (pipeline.py), so a
    run restores with another process count."""

    def save(self, directory: epath.Path, *args, **kwargs):
        a = kwargs.get("args", args[0] if args else None)
        a.iterator.save(os.fspath(directory))

    def restore(self, directory: epath.Path, *args, **kwargs):
        a = kwargs.get("args", args[0] if args else None)
        a.iterator.restore(os.fspath(directory))
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
    """Periodic async saves with checksums, keep-last-K that never drops the
    newest verified step, and restore of the newest good checkpoint."""

    def __init__(self, workdir: str, save_every: int, keep: int | None, async_save: bool = True):
        self.directory = epath.Path(absolute(workdir)) / "checkpoints"
        self.quarantine = epath.Path(absolute(workdir)) / "checkpoints_corrupt"
        self._options = ocp.CheckpointManagerOptions(
            save_interval_steps=max(save_every, 1),
            max_to_keep=None,  # retention is `_prune`, after checksumming
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self.keep = keep if keep and keep > 0 else None
        self.async_save = async_save
        self.manager = self._new_manager()
        self._pending: dict[int, Future | None] = {}  # saved, manifest not yet written (process 0: its hash job)
        self._verified = {s for s in self.manager.all_steps() if (self._step_dir(s) / MANIFEST).exists()}
        self._lock = threading.Lock()  # _verified, as the hashing thread adds to it
        self._hasher = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="codemix-checksum")
                        if jax.process_index() == 0 else None)
        self._closed = False

    def _new_manager(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(self.directory, options=self._options, item_names=ITEMS)

    def _step_dir(self, step: int) -> epath.Path:
        return self.directory / str(step)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: dict, iterator, meta: dict, force: bool = False) -> bool:
        """Save (async) at save-interval steps or when forced. Raises
        NonFiniteLoss, writing nothing, if the state holds NaN/Inf."""
        if not force and not self.manager.should_save(step):
            return False
        if not guards.state_is_finite({"params": state["params"], "opt_state": state["opt_state"]}):
            good = self.latest_step()
            self.close()
            raise guards.NonFiniteLoss(
                step,
                f"the parameters or optimizer state are non-finite at step {step} (a checkpoint step); "
                f"the loss or gradient went non-finite after the last metrics line "
                f"(train.log_every=1 finds the exact step). No checkpoint was written; the last one, "
                f"step {good}, is kept. Lower the learning rate (or check the data) and rerun.",
            )
        # Orbax's save waits for the previous write anyway; waiting first lets
        # retention run on committed steps. The previous step's hash is not waited for.
        self.manager.wait_until_finished()
        self._collect()
        self._prune()
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(state["params"]),
            opt_state=ocp.args.StandardSave(state["opt_state"]),
            data=DataIteratorSave(iterator),
            meta=ocp.args.JsonSave(meta),
        )
        saved = self.manager.save(step, args=args, force=force)
        if saved:
            log.info("checkpoint: saving step %d to %s", step, self.directory)
            self._pending[step] = self._hasher.submit(self._checksum, step) if self._hasher else None
            if not self.async_save:
                self._finish_pending()
        return saved

    def _checksum(self, step: int) -> None:
        """Process 0's hashing thread: wait for the step's commit, then hash it.
        A failure leaves the step without a manifest (restored unverified)."""
        try:
            self.manager.wait_until_finished()  # joins Orbax's finalize thread; no collective
            start = time.perf_counter()
            manifest = write_manifest(self._step_dir(step))
        except Exception as e:  # noqa: BLE001  (the run goes on; the step stays unverified)
            log.error("checkpoint: step %d could not be checksummed (%s); it stays unverified.",
                      step, first_line(e))
            return
        with self._lock:
            self._verified.add(step)
        log.info("checkpoint: step %d checksummed (%d files, %.2fs, in the background)", step,
                 len(manifest["files"]), time.perf_counter() - start)

    def _collect(self) -> None:
        """Forget the hash jobs that are done (without waiting for the others)."""
        for step, job in list(self._pending.items()):
            if job is None or job.done():
                del self._pending[step]

    def _finish_pending(self) -> None:
        """Wait for in-flight writes and their checksums, then apply retention."""
        self.manager.wait_until_finished()
        for job in self._pending.values():
            if job is not None:
                job.result()
        if jax.process_index() != 0:  # process 0 hashed them (its broadcast in _prune says which)
            self._verified.update(self._pending)
        self._pending = {}
        self._prune()

    def _protected(self, steps: list[int]) -> set[int]:
        """The newest verified step and the steps still being hashed, as process 0 sees them."""
        with self._lock:
            verified = [s for s in steps if s in self._verified]
        hashing = [s for s, job in self._pending.items() if job is not None and not job.done()]
        newest, oldest_hashing = (verified[-1] if verified else -1), (min(hashing) if hashing else -1)
        if jax.process_count() > 1:
            got = multihost_utils.broadcast_one_to_all(np.array([newest, oldest_hashing], np.int64))
            newest, oldest_hashing = (int(v) for v in np.asarray(got))
        return {s for s in steps if s == newest or (oldest_hashing >= 0 and s >= oldest_hashing)}

    def _prune(self) -> None:
        if self.keep is None:
            return
        steps = sorted(self.manager.all_steps())
        keep = set(steps[-self.keep:]) | self._protected(steps)
        for step in steps:
            if step not in keep:
                self.manager.delete(step)

    def restore(self, step: int, abstract_state: dict, shardings: dict, iterator) -> tuple[dict, dict]:
        """Restore params, optimizer state, iterator position and meta at `step`,
        after checking its files against the manifest. CorruptCheckpoint if
        they differ or can't be read."""
        step_dir = self._step_dir(step)
        verified = verify_shared(step_dir)
        if not verified:
            log.warning("checkpoint %s has no %s (written before checksums, or the job stopped "
                            "before hashing it); restoring it unverified.", step_dir, MANIFEST)
        try:
            self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # truncated JSON, missing folder, ...
            raise CorruptCheckpoint(f"{step_dir / 'meta'}: unreadable ({first_line(e)}).") from e
        position = step_dir / "data" / "position.json"
        if position.exists():
            try:
                saved = json.loads(position.read_text())
            except ValueError as e:
                raise CorruptCheckpoint(f"{position}: unreadable ({first_line(e)}).") from e
            # A data position that doesn't fit this run's data is a config error, not corruption.
            iterator.check_position(saved, os.fspath(position.parent))
        args = ocp.args.Composite(
            params=ocp.args.StandardRestore(_abstract(abstract_state["params"], shardings["params"])),
            opt_state=ocp.args.StandardRestore(
                _abstract(abstract_state["opt_state"], shardings["opt_state"])
            ),
            data=DataIteratorRestore(iterator),
            meta=ocp.args.JsonRestore(),
        )
        try:
            out = self.manager.restore(step, args=args)
        except Exception as e:
            if verified:  # the files are as written: a mismatch with this run's config, not corruption
                raise
            raise CorruptCheckpoint(f"{step_dir}: params, opt_state or data could not be read, a file "
                                    f"is truncated or damaged ({first_line(e)}).") from e
        state = {
            "step": jax.device_put(np.int32(step), shardings["step"]),
            "params": out.params,
            "opt_state": out.opt_state,
        }
        if not guards.state_is_finite({"params": out.params, "opt_state": out.opt_state}):
            raise CorruptCheckpoint(f"{step_dir}: holds non-finite parameters or optimizer state.")
        return state, dict(out.meta)

    def restore_latest(self, abstract_state: dict, shardings: dict, iterator) -> tuple[dict, dict, int]:
        """Restore the newest good checkpoint: (state, meta, step). Corrupt newer
        ones are reported by name and moved to checkpoints_corrupt/ (so the redone
        steps can be saved again); CorruptCheckpoint if none is good."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}.")
        bad: list[tuple[int, str]] = []
        for step in steps:
            try:
                state, meta = self.restore(step, abstract_state, shardings, iterator)
            except CorruptCheckpoint as e:
                log.error("checkpoint step %d is corrupt: %s", step, e)
                bad.append((step, str(e)))
                continue
            if bad:
                self._set_aside([s for s, _ in bad])
                log.warning(
                    "resuming from step %d, the newest good checkpoint: %d corrupt newer checkpoint(s) "
                    "(steps %s) moved to %s; %d steps (%d..%d) will be redone.",
                    step, len(bad), ", ".join(str(s) for s, _ in bad), self.quarantine,
                    steps[0] - step, step + 1, steps[0])
            return state, meta, step
        lines = "\n  ".join(m for _, m in bad)
        raise CorruptCheckpoint(
            f"no usable checkpoint in {self.directory}:\n  {lines}\nRestore the named files from a copy, "
            f"or move {self.directory} away to start this run from scratch."
        )

    def _set_aside(self, steps: list[int]) -> None:
        self.manager.wait_until_finished()
        if jax.process_index() == 0:
            self.quarantine.mkdir(parents=True, exist_ok=True)
            for step in steps:
                target = self.quarantine / str(step)
                if target.exists():
                    target = self.quarantine / f"{step}.{int(time.time())}"
                self._step_dir(step).rename(target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("codemix_checkpoint_set_aside")
        self.manager.close()
        self.manager = self._new_manager()
        with self._lock:
            self._verified -= set(steps)

    def wait(self):
        self._finish_pending()

    def close(self):
        if self._closed:
            return
        try:
            self._finish_pending()
        finally:
            if self._hasher is not None:
                self._hasher.shutdown(wait=True)
            self.manager.close()
            self._closed = True


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
    return {name: tuple(leaf.shape) for name, leaf in pytree.flat(tree).items()}


def load_params(path: str, abstract_params: dict, shardings: dict, step: int | None = None) -> tuple[dict, int]:
    """Weights only, from another run (or an imported model). Checks every
    parameter's presence and shape first and names the first mismatch."""
    params_dir = resolve_params_dir(path, step)
    if params_dir.name == "params":
        verify_shared(params_dir.parent, only="params")
    checkpointer = ocp.StandardCheckpointer()
    # The item handler's metadata, not the checkpointer's: params/ is one item
    # of a CheckpointManager step (its _CHECKPOINT_METADATA is the step's), and
    # StandardCheckpointer.metadata would warn once per load that the item has none.
    handler = ocp.StandardCheckpointHandler()
    try:
        meta = handler.metadata(epath.Path(params_dir))
    finally:
        handler.close()
    tree_meta = getattr(meta, "item_metadata", meta)
    theirs = _flat_shapes(tree_meta.tree if hasattr(tree_meta, "tree") else tree_meta)
    # A checkpoint of the other layer layout (scanned vs unrolled) is restored in
    # its own layout and converted (codemix/model/layer_stack.py).
    stacked = layer_stack.is_stacked(abstract_params)
    saved_stacked = any(name.startswith(layer_stack.STACKED + "/") for name in theirs)
    depth = None
    if stacked != saved_stacked:
        depth = (jax.tree.leaves(abstract_params[layer_stack.STACKED])[0].shape[0] if stacked
                 else len(abstract_params[layer_stack.PER_LAYER]))
        target_sh = shardings
        abstract_params = layer_stack.to_layout(abstract_params, saved_stacked)
        shardings = layer_stack.to_layout(shardings, saved_stacked, depth)
        log.info("init checkpoint %s has %s layers; converting to this model's %s layers", params_dir,
                 "scanned" if saved_stacked else "unrolled", "scanned" if stacked else "unrolled")
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
    if depth is not None:
        params = jax.device_put(layer_stack.to_layout(params, stacked, depth), target_sh)
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
