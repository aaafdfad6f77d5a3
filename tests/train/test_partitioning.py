"""One rules table gives every sharding; odd sizes fall back to replication."""
import jax
import optax
import pytest
from jax.sharding import PartitionSpec as P

from codemix.model import decoder
from codemix.model.config import ModelConfig
from codemix.train import partitioning


def test_mesh_fills_the_rest():
    mesh = partitioning.make_mesh(data=1, fsdp=-1, tensor=2)
    assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 2}
    with pytest.raises(ValueError, match="data\\*fsdp\\*tensor"):
        partitioning.make_mesh(data=3, fsdp=1, tensor=1)


def test_logical_rules_map_params_and_batch():
    mesh = partitioning.make_mesh(fsdp=4, tensor=2)
    assert partitioning.logical_to_spec(("embed", "mlp"), (64, 128), mesh) == P("fsdp", "tensor")
    assert partitioning.logical_to_spec(("embed", "heads", "kv"), (64, 4, 16), mesh) == P("fsdp", "tensor", None)
    # 3 KV heads can't split over tensor=2: replicated on that axis.
    assert partitioning.logical_to_spec(("embed", "kv_heads", "kv"), (64, 3, 16), mesh) == P("fsdp", None, None)
    assert partitioning.batch_sharding(mesh, 2).spec == P(("data", "fsdp"), None)
    with pytest.raises(KeyError, match="no rule"):
        partitioning.logical_to_spec(("bogus",))


def test_optimizer_state_follows_params():
    mesh = partitioning.make_mesh(fsdp=4, tensor=2)
    cfg = ModelConfig(vocab_size=64, d_model=32, num_layers=1, num_heads=2, num_kv_heads=2,
                      head_dim=16, d_ff=64)
    _, axes = decoder.graphdef_and_axes(cfg)
    abstract = decoder.abstract_params(cfg)
    psh = partitioning.tree_shardings(axes, abstract, mesh)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
    aopt = jax.eval_shape(opt.init, abstract)
    osh = partitioning.opt_state_shardings(opt, aopt, psh, mesh)
    mu = osh[1][0].mu
    assert mu["layers"][0]["mlp"]["up"].spec == P("fsdp", "tensor")
    assert osh[1][0].count.spec == P()
