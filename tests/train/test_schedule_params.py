"""The learning-rate schedule is a runtime input of the train step: every stage
(init, continue, cooldown) compiles the same program, with the same numbers as
a schedule baked in as constants; the per-source sums are padded to a fixed
number of slots without changing them."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codemix.model.config import ModelConfig
from codemix.train import partitioning
from codemix.train.optimizer import make_optimizer, make_schedule
from codemix.train.state import fresh_state, state_layout
from codemix.train.step import (
    jit_train_step,
    make_train_step,
    source_slots,
    with_schedule,
)

CFG = ModelConfig(vocab_size=64, d_model=32, num_layers=1, num_heads=2, num_kv_heads=2, head_dim=16,
                  d_ff=64, dtype="float32", param_dtype="float32")
STAGES = [  # init, continue, cooldown of the stage gins, and the other two kinds
    {"total_steps": 37, "kind": "cosine", "peak": 3e-3, "warmup_steps": 5, "min_ratio": 0.1},
    {"total_steps": 16, "kind": "cosine", "peak": 3e-4, "warmup_steps": 2000, "min_ratio": 0.1},
    {"total_steps": 4, "kind": "linear", "peak": 1e-3, "warmup_steps": 0, "final_lr": 1e-6},
    {"total_steps": 30, "kind": "constant", "peak": 0.5, "warmup_steps": 3},
    {"total_steps": 100, "kind": "wsd", "peak": 1.0, "warmup_steps": 10, "min_ratio": 0.0, "decay_fraction": 0.2},
]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s["kind"])
def test_traced_numbers_give_the_constants_values_bit_for_bit(stage):
    baked = make_schedule(**stage)
    steps = jnp.arange(0, stage["total_steps"] + 3, dtype=jnp.int32)
    want = np.asarray(jax.jit(lambda s: jax.lax.map(baked, s))(steps))
    probe = make_schedule(total_steps=1)  # another schedule's object: only its formula is used

    def traced(params, s):
        with probe.reading(params):
            return jax.lax.map(probe, s)

    got = np.asarray(jax.jit(traced)(jax.tree.map(jnp.asarray, baked.params()), steps))
    np.testing.assert_array_equal(got, want)
    assert want[stage["total_steps"]] == pytest.approx(float(baked(stage["total_steps"])), rel=1e-6)


def _batch(rows=4, length=8):
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, CFG.vocab_size, (rows, length + 1)).astype(np.int32)
    return {"decoder_input_tokens": tokens[:, :-1], "decoder_target_tokens": tokens[:, 1:],
            "decoder_segment_ids": np.ones((rows, length), np.int32),
            "decoder_positions": np.tile(np.arange(length, dtype=np.int32), (rows, 1)),
            "decoder_loss_weights": np.ones((rows, length), np.float32),
            "source_id": np.zeros((rows,), np.int32), "epoch": np.zeros((rows,), np.int32)}


def _steps(stage, runtime: bool, abstract: bool = False):
    mesh = partitioning.make_mesh(num_devices=1)
    schedule = make_schedule(**stage)
    opt = make_optimizer(schedule)
    layout = state_layout(CFG, opt, mesh)
    step_fn = make_train_step(CFG, opt, schedule, 1, 1, layout.row_sharding)
    jitted = jit_train_step(step_fn, layout.shardings, layout.batch_shardings, mesh, schedule_params=runtime)
    step = with_schedule(jitted, schedule, mesh) if runtime else jitted
    if abstract:  # enough to lower
        state = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": layout.abstract_params,
                 "opt_state": layout.abstract_opt_state}
    else:
        state = fresh_state(CFG, opt, layout, seed=0)
    batch = {k: jax.device_put(v, layout.batch_shardings[k]) for k, v in _batch().items()}
    return jitted, step, state, batch, schedule


def test_every_stage_lowers_to_one_program():
    def text(stage, runtime):
        jitted, _, state, batch, schedule = _steps(stage, runtime, abstract=True)
        extra = (jax.tree.map(jnp.asarray, schedule.params()),) if runtime else ()
        return jitted.lower(state, batch, *extra).as_text()

    init, cooldown = STAGES[0], STAGES[2]
    assert text(init, True) == text(cooldown, True)
    assert text(init, False) != text(cooldown, False)  # baked in: one program per schedule


def _train(stage, runtime: bool):
    _, step, state, batch, _ = _steps(stage, runtime)
    lrs, losses = [], []
    for _ in range(7):  # through the warmup into the cosine
        state, m = step(state, batch)
        lrs.append(float(m["lr"]))
        losses.append(float(m["loss"]))
    return lrs, losses, jax.device_get(state["params"]["embed"])


def test_runtime_schedule_steps_equal_baked_steps():
    lrs, losses, embed = _train(STAGES[0], runtime=True)
    baked_lrs, baked_losses, baked_embed = _train(STAGES[0], runtime=False)
    assert lrs == baked_lrs and losses == baked_losses
    np.testing.assert_array_equal(embed, baked_embed)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(3e-3)


def test_schedule_params_need_a_schedule_that_reads_them():
    mesh = partitioning.make_mesh(num_devices=1)
    opt = make_optimizer(lambda _: 1e-3)
    layout = state_layout(CFG, opt, mesh)
    step_fn = make_train_step(CFG, opt, lambda _: 1e-3, 1, 1, layout.row_sharding)
    state = fresh_state(CFG, opt, layout, seed=0)
    with pytest.raises(TypeError, match="make_schedule"):
        step_fn(state, _batch(), make_schedule(4).params())


def test_source_slots_pad_multi_source_sums_without_changing_them():
    assert [source_slots(n) for n in (1, 2, 5, 8, 9)] == [1, 8, 8, 8, 16]
    mesh = partitioning.make_mesh(num_devices=1)
    schedule = make_schedule(**STAGES[0])
    opt = make_optimizer(schedule)
    layout = state_layout(CFG, opt, mesh)
    batch = _batch(rows=8)
    batch["source_id"] = np.array([0, 2, 1, 2, 0, 0, 1, 2], np.int32)
    batch = {k: jax.device_put(v, layout.batch_shardings[k]) for k, v in batch.items()}
    out = {}
    for slots in (3, source_slots(3)):
        step = jit_train_step(make_train_step(CFG, opt, schedule, slots, 1, layout.row_sharding),
                              layout.shardings, layout.batch_shardings, mesh)
        state, m = step(fresh_state(CFG, opt, layout, seed=0), batch)
        out[slots] = jax.device_get((m, state["params"]))
    (m3, p3), (m8, p8) = out[3], out[8]
    assert m8["loss_sum_by_source"].shape == (8,) and not m8["loss_sum_by_source"][3:].any()
    for k in ("loss_sum_by_source", "tokens_by_source", "repeated_rows_by_source"):
        np.testing.assert_array_equal(m8[k][:3], m3[k])
    assert m8["loss"] == m3["loss"] and m8["grad_norm"] == m3["grad_norm"]
    jax.tree.map(np.testing.assert_array_equal, p8, p3)
