"""HF Llama checkpoints: export then import gives the same parameters and logits."""
import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from codemix.model import decoder, hf_io
from codemix.model.config import ModelConfig

GQA_UNTIED = ModelConfig(vocab_size=96, d_model=48, num_layers=3, num_heads=6, num_kv_heads=2, head_dim=8,
                         d_ff=80, tie_embeddings=False, rope_theta=50000.0, norm_eps=1e-6)
TIED = GQA_UNTIED.replace(tie_embeddings=True, num_kv_heads=6)


def _logits(cfg, params):
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 17)), jnp.int32)
    return np.asarray(decoder.apply(cfg, jax.tree.map(jnp.asarray, params), tokens)[0])


@pytest.mark.parametrize("cfg", [GQA_UNTIED, TIED], ids=["gqa_untied", "mha_tied"])
def test_export_then_import_gives_identical_params_and_logits(cfg, tmp_path):
    params = jax.tree.map(np.asarray, decoder.init_params(cfg, seed=1))
    hf_io.export_hf(str(tmp_path), cfg, params, {"eos_token_id": 2})
    back_cfg, back = hf_io.import_hf(str(tmp_path))
    assert back_cfg == cfg
    jax.tree.map(np.testing.assert_array_equal, back, params)
    np.testing.assert_array_equal(_logits(cfg, back), _logits(cfg, params))
    hf = json.loads((tmp_path / "config.json").read_text())
    assert hf["model_type"] == "llama" and hf["eos_token_id"] == 2
    assert ("lm_head.weight" in load_file(str(tmp_path / "model.safetensors"))) == (not cfg.tie_embeddings)


def test_hf_layout_is_torch_linear_out_by_in(tmp_path):
    """q_proj rows are heads * head_dim (head-major), columns are d_model."""
    cfg = GQA_UNTIED
    params = jax.tree.map(np.asarray, decoder.init_params(cfg, seed=2))
    tensors = hf_io.codemix_to_hf(cfg, params)
    q = tensors["model.layers.0.self_attn.q_proj.weight"]
    assert q.shape == (cfg.num_heads * cfg.head_dim, cfg.d_model)
    head1 = params["layers"][0]["attn"]["q"][:, 1, :]  # [D, H]
    np.testing.assert_array_equal(q[cfg.head_dim: 2 * cfg.head_dim], head1.T)
    assert tensors["model.layers.0.self_attn.o_proj.weight"].shape == (cfg.d_model, cfg.num_heads * cfg.head_dim)


def test_cli_exports_an_imported_model_dir_and_reimports_it(tmp_path):
    from codemix.commands import import_ as import_cli
    from codemix.model import model_dir

    cfg = GQA_UNTIED
    params = jax.tree.map(np.asarray, decoder.init_params(cfg, seed=4))
    spec = {"format": "codemix-bpe-1", "pre": "smollm", "tokens": ["a"], "merges": [], "eos_id": 0}
    model_dir.write_model_dir(str(tmp_path / "model"), cfg, params, spec, source="test")

    def cli(*argv):
        parser = argparse.ArgumentParser()
        import_cli.add_arguments(parser)
        return import_cli.run(parser.parse_args(list(argv)))

    assert cli("--from", str(tmp_path / "model"), "--export_hf", str(tmp_path / "hf")) == 0
    assert json.loads((tmp_path / "hf" / "bpe_vocab.json").read_text()) == spec
    # Without our own file, the HF tokenizer.json written beside it gives the same vocabulary.
    from codemix.model.bpe_vocab import BPEVocabulary

    moved = (tmp_path / "hf" / "bpe_vocab.json").rename(tmp_path / "bpe_vocab.json")
    hf_spec, problem = model_dir.hf_vocab_spec(str(tmp_path / "hf"))
    assert problem is None and BPEVocabulary.from_spec(hf_spec) == BPEVocabulary.from_spec(spec)
    moved.rename(tmp_path / "hf" / "bpe_vocab.json")
    assert cli("--from", str(tmp_path / "hf"), "--output", str(tmp_path / "again")) == 0
    back_cfg, back, back_spec = model_dir.load_model_dir(str(tmp_path / "again"))
    assert back_cfg == cfg and back_spec == spec
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), back, params)


def test_missing_tensor_is_named(tmp_path):
    cfg = GQA_UNTIED
    hf_io.export_hf(str(tmp_path), cfg, jax.tree.map(np.asarray, decoder.init_params(cfg)))
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["model.layers.2.self_attn.k_proj.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(hf_io.CheckpointFormatError, match=r"no tensor 'model\.layers\.2\.self_attn\.k_proj"):
        hf_io.import_hf(str(tmp_path))


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gpt_neox"}, "model_type 'gpt_neox' is not supported"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
    ({"attention_bias": True}, "bias"),
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
])
def test_config_codemix_cannot_represent_is_refused(tmp_path, change, message):
    cfg = TIED
    hf_io.export_hf(str(tmp_path), cfg, jax.tree.map(np.asarray, decoder.init_params(cfg)))
    hf = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**hf, **change}))
    with pytest.raises(hf_io.CheckpointFormatError, match=message):
        hf_io.import_hf(str(tmp_path))


def test_unrepresentable_codemix_model_is_not_exported(tmp_path):
    cfg = TIED.replace(parallel_block=True, activation="gelu")
    with pytest.raises(hf_io.CheckpointFormatError, match="parallel_block=True"):
        hf_io.export_hf(str(tmp_path), cfg, jax.tree.map(np.asarray, decoder.init_params(cfg)))


def test_directory_without_weights_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hf_io.config_to_hf(TIED)))
    with pytest.raises(hf_io.CheckpointFormatError, match="no model.safetensors"):
        hf_io.import_hf(str(tmp_path))
