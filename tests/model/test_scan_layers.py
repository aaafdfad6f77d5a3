"""Scanned layers (ModelConfig.scan_layers): the same model as the unrolled one.

The stacked parameters are the per-layer ones stacked on a leading axis
(codemix/model/layer_stack.py), so a scanned model run on `stack(params)` must
give the unrolled model's loss and gradients, and checkpoints and HF export
work from either layout.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from codemix.model import decoder, hf_io, layer_stack
from codemix.model.config import REMAT_POLICIES, ModelConfig
from codemix.train import checkpointing, partitioning

CFG = ModelConfig(num_layers=3)


def _packed_batch(seed=0, batch=2, length=256, vocab=259):
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, vocab, (batch, length))
    segments = np.zeros((batch, length), np.int32)
    positions = np.zeros((batch, length), np.int32)
    for r in range(batch):
        cuts = sorted(rng.choice(np.arange(8, length - 16), 2, replace=False))
        bounds = [0, *cuts, length - 10]  # three documents, then padding
        for s, (a, b) in enumerate(itertools.pairwise(bounds)):
            segments[r, a:b] = s + 1
            positions[r, a:b] = np.arange(b - a)
    return jnp.asarray(tokens), jnp.asarray(segments), jnp.asarray(positions)


def _loss(cfg, params, batch):
    tokens, segments, positions = batch
    logits, _ = decoder.apply(cfg, params, tokens, segments, positions)
    ce = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, tokens[..., None], -1)[..., 0]
    return jnp.sum(ce * (segments > 0)) / jnp.sum(segments > 0)


@pytest.mark.parametrize("remat", ["none", "dots", "save_qkv_attn"])
def test_scanned_model_has_the_unrolled_loss_and_gradients(remat):
    cfg = CFG.replace(remat=remat)
    params = decoder.init_params(cfg, 0)
    batch = _packed_batch()
    loss, grads = jax.value_and_grad(lambda p: _loss(cfg, p, batch))(params)
    scanned = cfg.replace(scan_layers=True)
    s_loss, s_grads = jax.value_and_grad(lambda p: _loss(scanned, p, batch))(layer_stack.stack(params))
    assert float(s_loss) == pytest.approx(float(loss), rel=1e-6)
    s_grads = layer_stack.unstack(s_grads)
    assert jax.tree.structure(s_grads) == jax.tree.structure(grads)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(s_grads)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_scanned_params_are_stacked_with_a_whole_layer_axis():
    scanned = CFG.replace(scan_layers=True)
    abstract = decoder.abstract_params(scanned)
    assert "layers" not in abstract
    assert abstract["blocks"]["attn"]["q"].shape == (3, CFG.d_model, CFG.num_heads, CFG.head_dim)
    _, axes = decoder.graphdef_and_axes(scanned)
    assert axes["blocks"]["attn"]["q"] == (None, "embed", "heads", "kv")
    per_layer = decoder.abstract_params(CFG)
    assert jax.tree.map(lambda x: x.shape, layer_stack.stack(per_layer)) == jax.tree.map(lambda x: x.shape, abstract)


def test_stack_then_unstack_is_the_identity():
    params = decoder.init_params(CFG, 1)
    back = layer_stack.unstack(layer_stack.stack(params))
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_scanned_model_decodes_with_a_kv_cache_like_the_unrolled_one():
    params = decoder.init_params(CFG, 2)
    tokens = jnp.arange(12, dtype=jnp.int32)[None] % 200
    want, _ = decoder.apply(CFG, params, tokens)
    scanned = CFG.replace(scan_layers=True)
    caches = decoder.init_cache(scanned, 1, 16)
    got, _ = decoder.apply(scanned, layer_stack.stack(params), tokens, caches=caches)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("saved_scanned", [False, True])
def test_checkpoint_of_either_layout_loads_into_the_other(tmp_path, saved_scanned):
    params = decoder.init_params(CFG, 3)
    saved = layer_stack.to_layout(params, saved_scanned)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "params", saved)
    ckpt.wait_until_finished()
    model = CFG.replace(scan_layers=not saved_scanned)
    mesh = partitioning.make_mesh(num_devices=1)
    _, axes = decoder.graphdef_and_axes(model)
    abstract = decoder.abstract_params(model)
    loaded, _ = checkpointing.load_params(str(tmp_path / "params"), abstract,
                                          partitioning.tree_shardings(axes, abstract, mesh))
    want = layer_stack.to_layout(params, not saved_scanned)
    assert jax.tree.structure(loaded) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_hf_export_of_a_scanned_model_equals_the_unrolled_export():
    params = decoder.init_params(CFG.replace(tie_embeddings=False), 4)
    cfg = CFG.replace(tie_embeddings=False)
    want = hf_io.codemix_to_hf(cfg, params)
    got = hf_io.codemix_to_hf(cfg.replace(scan_layers=True), layer_stack.stack(params))
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    back = hf_io.hf_to_codemix(cfg.replace(scan_layers=True), got)
    assert layer_stack.is_stacked(back)


def test_named_remat_policies_are_accepted_and_unknown_ones_list_the_choices():
    assert {"save_qkv", "save_qkv_attn", "save_out_proj"} <= set(REMAT_POLICIES)
    with pytest.raises(ValueError, match="save_qkv"):
        ModelConfig(remat="everything")
