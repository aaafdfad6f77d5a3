"""The logical-axis rules are one gin-configurable table; optimizer state and
activations follow the parameters' shardings through it."""
import functools

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
from codemix import config as cm_config
from codemix import pytree
from codemix.model import decoder
from codemix.model.config import ModelConfig
from codemix.train import partitioning
from codemix.train.optimizer import make_optimizer, make_schedule
from codemix.train.state import state_layout
from codemix.train.step import _constrain
from tests.train.helpers import MICRO, TINY_GIN

CFG = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                  head_dim=8, d_ff=64, tie_embeddings=False)

# The default table with the model width replicated and the FFN split over
# fsdp x tensor: a layout a runtime gin might choose.
OVERRIDE = ("logical_axis_rules.rules = ("
            "('batch', ('data', 'fsdp')), ('length', None), ('vocab', 'tensor'), ('embed', None), "
            "('mlp', ('fsdp', 'tensor')), ('heads', 'tensor'), ('kv_heads', 'tensor'), "
            "('kv', None), ('norm', None))")


def _adam_states(opt_state):
    return [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]


def test_adam_moments_take_every_parameters_sharding_on_8_devices():
    mesh = partitioning.make_mesh(fsdp=4, tensor=2)
    layout = state_layout(CFG, make_optimizer(make_schedule(total_steps=10)), mesh)
    params = pytree.flat(layout.shardings["params"])
    (adam,) = _adam_states(layout.shardings["opt_state"])
    split = [name for name, sh in params.items() if sh.spec != P(*[None] * len(sh.spec))]
    assert len(split) >= 8  # the mesh really splits most parameters
    for moment in (adam.mu, adam.nu):
        got = pytree.flat(moment)
        assert list(got) == list(params)
        for name, sh in params.items():
            assert got[name] == sh, name
    # Besides mu and nu, this optimizer holds two step counts, replicated.
    assert len(jax.tree.leaves(layout.shardings["opt_state"])) == 2 * len(params) + 2
    assert adam.count.spec == P()


def test_gin_override_of_the_logical_axis_rules_changes_the_parameter_sharding():
    mesh = partitioning.make_mesh(fsdp=4, tensor=2)
    optimizer = make_optimizer(make_schedule(total_steps=10))
    default = state_layout(CFG, optimizer, mesh).shardings["params"]
    assert default["layers"][0]["mlp"]["up"].spec == P("fsdp", "tensor")
    assert default["embed"].spec == P("tensor", "fsdp")

    cm_config.parse([TINY_GIN], MICRO + ["TRAIN_STEPS=2", OVERRIDE])
    layout = state_layout(CFG, optimizer, mesh)
    params = layout.shardings["params"]
    assert params["layers"][0]["mlp"]["up"].spec == P(None, ("fsdp", "tensor"))
    assert params["layers"][0]["mlp"]["down"].spec == P(("fsdp", "tensor"), None)
    assert params["embed"].spec == P("tensor", None)
    (adam,) = _adam_states(layout.shardings["opt_state"])
    assert adam.mu["layers"][0]["mlp"]["up"].spec == P(None, ("fsdp", "tensor"))


def test_a_rule_naming_an_unknown_mesh_axis_is_one_clear_error():
    gin.parse_config("logical_axis_rules.rules = (('embed', 'fdsp'),)")
    with pytest.raises(ValueError, match="'embed' maps to \\['fdsp'\\], not a mesh axis"):
        partitioning.logical_to_spec(("embed",))


def test_decoder_output_is_identical_with_and_without_an_explicit_constraint_on_1_device():
    mesh = partitioning.make_mesh(num_devices=1)
    params = decoder.init_params(CFG, seed=3)
    tokens = jax.random.randint(jax.random.key(0), (2, 16), 0, CFG.vocab_size)
    calls = []

    def constrain(x, axes):
        calls.append(axes)
        return _constrain(mesh, x, axes)

    plain = jax.jit(lambda p, t: decoder.apply(CFG, p, t)[0])(params, tokens)
    constrained = jax.jit(lambda p, t: decoder.apply(CFG, p, t, constrain=constrain)[0])(params, tokens)
    # Embedding, each block's output, and the logits were constrained.
    assert calls == [decoder.RESIDUAL_AXES] * (1 + CFG.num_layers) + [decoder.LOGITS_AXES]
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(constrained))
    assert np.all(np.isfinite(np.asarray(plain))) and float(jnp.std(plain)) > 0


def test_mesh_sizes_is_the_one_definition_make_mesh_and_the_planner_share():
    from codemix.train import planner

    assert partitioning.mesh_sizes(8, tensor=2) == {"data": 1, "fsdp": 4, "tensor": 2}
    assert planner.mesh_shape(num_devices=8, tensor=2) == partitioning.mesh_sizes(8, tensor=2)
    assert dict(partitioning.make_mesh(tensor=2).shape) == partitioning.mesh_sizes(8, tensor=2)
    with pytest.raises(ValueError, match="make_mesh: 8 devices can't be split"):
        planner.mesh_shape(num_devices=8, data=3)
    sizes = {"data": 2, "fsdp": 2, "tensor": 2}
    assert partitioning.shards_of(sizes, "batch") == 4
    assert partitioning.gathered(sizes) == {"data": 2, "fsdp": 1, "tensor": 2}


def test_constraint_function_of_the_train_step_shards_the_residual_stream():
    mesh = partitioning.make_mesh(fsdp=4, tensor=2)
    fn = jax.jit(functools.partial(_constrain, mesh, logical_axes=decoder.RESIDUAL_AXES))
    y = fn(jnp.zeros((8, 4, 32)))
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P(("data", "fsdp"), None, None)), 3)
    assert not y.sharding.is_fully_replicated
