"""Everything a run needs before its first step, built from the components
`train()` is given (gin binds them in gin/stages/; see trainer.py).

`set_up` makes, in order: the mesh, the data iterator (and so the step count
from the token budget), the LR schedule and optimizer, the state layout (one
rules table for params, optimizer state and batches), the checkpointer and
the state itself -- this run's newest good checkpoint if it has one, else the
`init_from` parent's weights, else a fresh initialisation -- the jitted train
step and the held-out evaluator; then rewinds the run's records to the step it
starts from (rewind.py) and writes operative_config.gin and run_info.json.
Each part is charged to its phase of the run's PhaseClock. The caller
(trainer.py) has already locked the workdir and checked the run's stored
configuration, so a refused run gets none of these writes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import jax

import gin
from codemix.model.config import ModelConfig
from codemix.model.info import model_info
from codemix.train import checkpointing
from codemix.train.budget import steps_for
from codemix.train.metrics import peak_flops_per_device
from codemix.train.optimizer import Schedule
from codemix.train.phases import PhaseClock
from codemix.train.record import fresh_meta
from codemix.train.rewind import rewind
from codemix.train.state import fresh_state, state_layout
from codemix.train.step import (
    jit_train_step,
    make_train_step,
    source_slots,
    with_schedule,
)

_peaks: dict[tuple, tuple[float, str]] = {}  # measured CPU peaks, once per process
log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunSetup:
    """What the loop runs with."""

    cfg: ModelConfig
    mesh: Any
    iterator: Any
    train_steps: int
    layout: Any
    ckpt: checkpointing.Checkpointer
    state: dict
    meta: dict
    start: int  # the step the loop starts after (0, or the restored step)
    step_fn: Callable
    heldout: Any  # HeldOutEvaluator or None
    info: Any  # model_info
    peak: float  # per device
    peak_source: str

    @property
    def tokens_per_step(self) -> int:
        return self.iterator.global_batch_size * self.iterator.sequence_length


def _peak(override: float | None) -> tuple[float, str]:
    key = (override, jax.devices()[0].device_kind)
    if key not in _peaks:
        _peaks[key] = peak_flops_per_device(override)
    return _peaks[key]


def heldout_evaluator(cfg, iterator, layout, mesh):
    """The held-out sets packed with the run's own vocabulary and sharded like training."""
    from codemix.data import heldout as heldout_data
    from codemix.data.pipeline import data_vocabulary
    from codemix.eval.perplexity import HeldOutEvaluator
    from codemix.train.state import ROW_FEATURES

    # make_train_iterator checked that every source shares one vocabulary; any source names it.
    vocab = data_vocabulary(iterator.source_names[0])
    start = time.perf_counter()
    docs = heldout_data.documents()
    rows_sh = {k: layout.batch_shardings[k] for k in ROW_FEATURES}
    ev = HeldOutEvaluator(cfg, vocab.encode, vocab.eos_id, iterator.sequence_length,
                          iterator.global_batch_size, docs, layout.shardings["params"], rows_sh, mesh)
    log.info("held-out sets: %s (%.1fs to build)",
                 {f: p.num_rows for f, p in ev.sets.items()}, time.perf_counter() - start)
    return ev


def _corpora_record(iterator, heldout) -> dict:
    """corpora.provenance of the training sources and, when held-out sets are measured, their families."""
    record = dict(iterator.corpora or {})
    if heldout is not None:
        from codemix.data import corpora

        record.update({f: p for f, p in corpora.provenance(list(heldout.sets)).items() if f not in record})
    return record


def _initial_state(a: dict, cfg, optimizer, layout, ckpt, iterator, workdir: str):
    """(state, meta, start step): resume, init_from a parent, or fresh."""
    meta = fresh_meta(len(iterator.source_names))
    if ckpt.latest_step() is not None:
        log.info("resuming %s from step %d", workdir, ckpt.latest_step())
        abstract_state = {"params": layout.abstract_params, "opt_state": layout.abstract_opt_state}
        state, meta, latest = ckpt.restore_latest(abstract_state, layout.shardings, iterator)  # newest good one
        return state, meta, latest
    if a["init_from"]:
        sh = layout.shardings
        params, src_step = checkpointing.load_params(a["init_from"], layout.abstract_params, sh["params"],
                                                     a["init_from_step"])
        state = fresh_state(cfg, optimizer, layout, params=params)
        if a["init_optimizer_from_parent"]:
            state["opt_state"] = checkpointing.load_opt_state(a["init_from"], layout.abstract_opt_state,
                                                              sh["opt_state"], src_step)
        log.info("initialised weights from %s (step %d); %s optimizer", a["init_from"], src_step,
                     "carried" if a["init_optimizer_from_parent"] else "fresh")
        return state, meta, 0
    return fresh_state(cfg, optimizer, layout, seed=a["seed"]), meta, 0


def set_up(workdir: str, a: dict, clock: PhaseClock) -> RunSetup:
    """Build the run from train()'s arguments `a` (see train() for each)."""
    if a["eval_every"] is not None and a["eval_every"] <= 0:
        raise ValueError(f"train.eval_every must be a positive number of steps or None, got {a['eval_every']}.")
    with clock.phase("startup"):
        cfg = a["model"] or ModelConfig()
        mesh = a["make_mesh"]()
    with clock.phase("data_setup"):
        iterator = a["make_iterator"]()
    if iterator.vocab_size > cfg.vocab_size:
        raise ValueError(
            f"the data's vocabulary has {iterator.vocab_size} ids but the model's vocab_size is "
            f"{cfg.vocab_size}; set ModelConfig.vocab_size (macro VOCAB_SIZE) >= {iterator.vocab_size}."
        )
    seq_len, global_batch = iterator.sequence_length, iterator.global_batch_size
    with clock.phase("startup"):
        train_steps = steps_for(a["train_steps"], a["token_budget"], global_batch * seq_len)
        schedule = a["make_schedule"](total_steps=a["schedule_steps"] or train_steps)
        optimizer = a["make_optimizer"](schedule)
        layout = state_layout(cfg, optimizer, mesh)
        ckpt = checkpointing.Checkpointer(workdir, a["checkpoint_every"], a["keep_checkpoints"],
                                          a["async_checkpoints"])
        state, meta, start = _initial_state(a, cfg, optimizer, layout, ckpt, iterator, workdir)
        rewind(workdir, start)  # what was logged after `start` is logged again
        # One program for every stage: the schedule's numbers are step inputs and the
        # per-source sums have source_slots() entries (step.py).
        step_fn = make_train_step(cfg, optimizer, schedule, source_slots(len(iterator.source_names)),
                                  a["grad_accum_steps"], layout.row_sharding)
        if isinstance(schedule, Schedule):
            jitted = with_schedule(jit_train_step(step_fn, layout.shardings, layout.batch_shardings, mesh,
                                                  schedule_params=True), schedule, mesh)
        else:  # a schedule of the user's own: its numbers are constants of the step
            jitted = jit_train_step(step_fn, layout.shardings, layout.batch_shardings, mesh)
    with clock.phase("data_setup"):
        heldout = heldout_evaluator(cfg, iterator, layout, mesh) if a["heldout"] else None
    with clock.phase("startup"):
        info = model_info(cfg, seq_len)
        if jax.process_index() == 0:
            from codemix import storage

            storage.path(workdir, "operative_config.gin").write_text(gin.operative_config_str())
            run_info = {
                "train_steps": train_steps,
                "token_budget": a["token_budget"],
                "tokens_per_step": global_batch * seq_len,
                "batch_size": global_batch,
                "sequence_length": seq_len,
                "sources": iterator.source_names,
                "requested_shares": iterator.rates,
                # per family trained on or measured held-out: its corpus fingerprint and declared sources
                "corpora": _corpora_record(iterator, heldout),
                "params": info.total_params,
                "flops_per_token": info.flops_per_token,
                "init_from": a["init_from"],
                "devices": jax.device_count(),
                "processes": jax.process_count(),
            }
            storage.path(workdir, "run_info.json").write_text(json.dumps(run_info, indent=2))
        peak, peak_source = _peak(a["peak_flops"])
    return RunSetup(cfg, mesh, iterator, train_steps, layout, ckpt, state, meta, start, jitted, heldout,
                    info, peak, peak_source)
