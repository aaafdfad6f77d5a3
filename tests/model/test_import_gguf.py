"""GGUF import: SmolLM2-135M in codemix gives llama.cpp's logits on the same weights."""
import os

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codemix.model import decoder, gguf_import
from codemix.model.bpe_vocab import BPEVocabulary
from codemix.model.config import ModelConfig
from tests.model import llama_subprocess
from tests.model.test_bpe_vocab import smollm2_path

PROMPTS = [
    "The quick brown fox jumps over the lazy dog. The capital of France is Paris, and",
    "<|im_start|>user\nWrite a Python function that adds two numbers.<|im_end|>\n<|im_start|>assistant\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint(fib(10))  # 55\n",
    "In 1969, 3 astronauts flew 384,400 km; they'd trained for years. Naïve? No.",
]
TOLERANCE = 1e-3

TINY = ModelConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, d_ff=48,
                   tie_embeddings=False, rope_theta=10000.0)


@pytest.fixture(scope="module")
def imported():
    return gguf_import.read_gguf(smollm2_path())


@pytest.fixture(scope="module")
def vocab(imported):
    return BPEVocabulary.from_spec(imported.vocab_spec)


@pytest.fixture(scope="module")
def codemix_logits(imported, vocab):
    """Logits of every prompt, one batched call (rows padded with segment id 0)."""
    rows = [vocab.encode(p) for p in PROMPTS]
    length = max(map(len, rows))
    tokens = np.zeros((len(rows), length), np.int32)
    segments = np.zeros_like(tokens)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        segments[i, : len(r)] = 1
    params = jax.tree.map(jnp.asarray, imported.params)
    logits, _ = decoder.apply(imported.cfg, params, jnp.asarray(tokens), jnp.asarray(segments))
    return rows, [np.asarray(logits[i, : len(r)]) for i, r in enumerate(rows)]


def test_config_comes_from_metadata(imported):
    assert imported.cfg == ModelConfig(
        vocab_size=49152, d_model=576, num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64, d_ff=1536,
        norm_eps=imported.cfg.norm_eps, rope_theta=100000.0, tie_embeddings=True,
    )
    assert imported.cfg.norm_eps == pytest.approx(1e-5)
    assert "lm_head" not in imported.params
    assert imported.vocab_problem is None
    assert decoder.param_count(imported.params) == decoder.param_count(decoder.abstract_params(imported.cfg))


@pytest.mark.slow
def test_logits_match_llama_cpp_f32_at_every_position(imported, codemix_logits, tmp_path_factory):
    llama_subprocess.require_llama_cpp()
    path = str(tmp_path_factory.mktemp("f32") / "smollm2-f32.gguf")
    gguf_import.write_gguf(path, imported.cfg, imported.params, imported.vocab_spec)
    rows, ours = codemix_logits
    diffs = []
    for ids, logits, ref in zip(rows, ours, llama_subprocess.llama_logits(path, rows, f32_cache=True)):
        diffs.append(float(np.abs(logits - ref).max()))
        assert np.array_equal(logits.argmax(-1), ref.argmax(-1))
    print("max |logit diff| vs llama.cpp (F32) per prompt:", [f"{d:.2e}" for d in diffs],
          "tokens:", [len(r) for r in rows])
    assert max(diffs) <= TOLERANCE
    os.remove(path)


def test_original_quantized_file_agrees_in_llama_cpp(codemix_logits):
    """A guard on the metadata: llama.cpp runs the Q4_1 file itself (activations
    quantized to 8 bits, so only the top token is compared)."""
    rows, ours = codemix_logits
    refs = llama_subprocess.llama_logits(smollm2_path(), rows)
    agree = [np.mean(ref.argmax(-1) == logits.argmax(-1)) for ref, logits in zip(refs, ours)]
    assert min(agree) >= 0.8, agree


def test_a_crash_in_llama_cpp_fails_one_test_with_its_signal():
    with pytest.raises(pytest.fail.Exception, match=r"died with exit status -11 \(SIGSEGV\) \(crash on "):
        llama_subprocess._run({"op": "crash", "model_path": smollm2_path()})


def test_qk_unpermute_inverts_gguf_permutation():
    w = np.arange(2 * 8 * 3, dtype=np.float32).reshape(16, 3)  # 2 heads of width 8
    assert np.array_equal(gguf_import.unpermute_qk(gguf_import.permute_qk(w, 2), 2), w)
    # GGUF interleaves the two halves of each head: rows 0, 4, 1, 5, ... of head 0.
    assert gguf_import.permute_qk(w, 2)[:4, 0].tolist() == [0.0, 12.0, 3.0, 15.0]


def test_f32_gguf_round_trips_params_exactly(tmp_path):
    params = jax.tree.map(np.asarray, decoder.init_params(TINY, seed=3))
    path = str(tmp_path / "tiny.gguf")
    gguf_import.write_gguf(path, TINY, params, None)
    back = gguf_import.read_gguf(path)
    assert back.cfg == TINY
    assert back.vocab_problem and "not byte-level BPE" in back.vocab_problem
    jax.tree.map(np.testing.assert_array_equal, back.params, params)


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.01])
def test_truncated_gguf_says_truncated_with_expected_and_actual_size(tmp_path, keep):
    params = jax.tree.map(np.asarray, decoder.init_params(TINY, seed=3))
    path = tmp_path / "tiny.gguf"
    gguf_import.write_gguf(str(path), TINY, params, None)
    full = path.stat().st_size
    assert gguf_import.expected_gguf_size(str(path)) == full
    cut = int(full * keep)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(gguf_import.GGUFImportError, match=r"tiny\.gguf is truncated") as e:
        gguf_import.read_gguf(str(path))
    if keep > 0.1:  # the header is complete: both sizes are known
        assert f"describes {full:,} bytes but the file has {cut:,}" in str(e.value)
    assert "out of bounds" not in str(e.value) and "reshape" not in str(e.value)


def test_expected_size_of_a_quantized_gguf_is_its_size():
    path = smollm2_path()  # Q4_1 blocks: sizes come from the quantization table
    assert gguf_import.expected_gguf_size(path) == os.path.getsize(path)


@pytest.mark.slow
def test_import_cli_writes_a_model_dir_a_stage_can_start_from(imported, tmp_path, capsys):
    from codemix import config as codemix_config
    from codemix.train import checkpointing

    out = tmp_path / "smollm2"
    assert codemix_import("--from", smollm2_path(), "--output", str(out)) == 0
    assert "134.5M params" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["bpe_vocab.json", "model.gin", "params"]
    import codemix.registry  # noqa: F401  (registers the configurables a gin file may name)
    codemix_config.parse([str(out / "model.gin")], finalize=False)
    cfg = ModelConfig()
    assert cfg == imported.cfg
    abstract = decoder.abstract_params(cfg)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    params, _ = checkpointing.load_params(str(out), abstract, jax.tree.map(lambda _: sharding, abstract))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), params, imported.params)
    assert BPEVocabulary(str(out)).encode("Hello 42") == BPEVocabulary.from_spec(imported.vocab_spec).encode(
        "Hello 42")
    # Refuses to overwrite without being asked.
    assert codemix_import("--from", smollm2_path(), "--output", str(out)) == 2
    assert "--overwrite" in capsys.readouterr().err


# --- bad input ----------------------------------------------------------------------------


def codemix_import(*argv: str) -> int:
    """`codemix import ARGV` (the module directly: other commands may not import here)."""
    import argparse

    from codemix.commands import import_ as import_cli
    from codemix.main import COMMANDS

    assert COMMANDS["import"][0] == "codemix.commands.import_"
    parser = argparse.ArgumentParser()
    import_cli.add_arguments(parser)
    return import_cli.run(parser.parse_args(list(argv)))


def _tiny_gguf(path, arch="llama", drop=(), extra=None):
    """A tiny GGUF written directly with gguf's writer (for the error paths)."""
    from codemix.model.hf_io import codemix_to_hf

    params = jax.tree.map(np.asarray, decoder.init_params(TINY, seed=0))
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_block_count(TINY.num_layers)
    writer.add_embedding_length(TINY.d_model)
    writer.add_feed_forward_length(TINY.d_ff)
    writer.add_head_count(TINY.num_heads)
    writer.add_head_count_kv(TINY.num_kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(TINY.vocab_size)
    for key, value in (extra or {}).items():
        writer.add_string(key, value)
    for name, w in codemix_to_hf(TINY, params).items():
        g = gguf_import.hf_to_gguf_name(name)
        if g not in drop:
            writer.add_tensor(g, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def test_file_that_is_not_gguf_is_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_text("this is a text file")
    with pytest.raises(gguf_import.GGUFImportError, match="is not a GGUF file"):
        gguf_import.read_gguf(str(bad))
    with pytest.raises(gguf_import.GGUFImportError, match="does not exist"):
        gguf_import.read_gguf(str(tmp_path / "nope.gguf"))


def test_architecture_codemix_cannot_represent_is_refused(tmp_path):
    path = _tiny_gguf(tmp_path / "falcon.gguf", arch="falcon")
    with pytest.raises(gguf_import.GGUFImportError, match="architecture 'falcon' can't be represented"):
        gguf_import.read_gguf(path)
    path = _tiny_gguf(tmp_path / "yarn.gguf", extra={"llama.rope.scaling.type": "yarn"})
    with pytest.raises(gguf_import.GGUFImportError, match="RoPE scaling"):
        gguf_import.read_gguf(path)


def test_missing_tensor_is_named(tmp_path):
    path = _tiny_gguf(tmp_path / "missing.gguf", drop=("blk.1.ffn_up.weight",))
    with pytest.raises(gguf_import.GGUFImportError, match=r"no tensor 'blk\.1\.ffn_up\.weight'"):
        gguf_import.read_gguf(path)


def test_import_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04not a gguf")
    assert codemix_import("--from", str(bad), "--output", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "is not a GGUF file" in err and "Traceback" not in err
