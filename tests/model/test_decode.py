"""KV-cache generation against full recomputation, stops, sampling."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codemix.model import decode, decoder
from codemix.model.config import ModelConfig

SHAPES = {"batch_size": 4, "pad_multiple": 32}  # shared, so tests reuse compilations
CFG = ModelConfig(vocab_size=300, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  head_dim=16, d_ff=128)


@pytest.fixture(scope="module")
def params():
    # A larger init scale makes the logits far from uniform, so greedy
    # choices are not decided by float noise.
    return jax.jit(lambda: decoder.init_params(CFG.replace(init_std=0.3), seed=1))()


WIDTH = 64  # the reference pads every sequence to one width: one compilation


@functools.partial(jax.jit, static_argnames="cfg")
def _last_logits(cfg, params, tokens, segment_ids, last):
    logits, _ = decoder.apply(cfg, params, tokens, segment_ids)
    return logits[0, last]


def full_recompute_greedy(cfg, params, prompt, steps):
    """Reference: rerun the whole sequence for every new token, no cache."""
    seq = list(prompt)
    for _ in range(steps):
        tokens = np.zeros((1, WIDTH), np.int32)
        segs = np.zeros((1, WIDTH), np.int32)
        tokens[0, : len(seq)] = seq
        segs[0, : len(seq)] = 1
        seq.append(int(jnp.argmax(_last_logits(cfg, params, tokens, segs, len(seq) - 1))))
    return seq[len(prompt):]


def test_kv_cache_generation_equals_full_recompute_token_for_token(params):
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 300, size=n).tolist() for n in (1, 5, 17, 30)]
    steps = 12
    cached = decode.generate(CFG, params, prompts, steps, **SHAPES)
    for prompt, got in zip(prompts, cached):
        assert got == full_recompute_greedy(CFG, params, prompt, steps)


def test_batch_composition_and_padding_do_not_change_greedy_output(params):
    prompts = [[5, 6, 7], [9] * 20, [11, 12]]
    together = decode.generate(CFG, params, prompts, 8, **SHAPES)
    alone = [decode.generate(CFG, params, [p], 8, batch_size=1, pad_multiple=32)[0] for p in prompts]
    assert together == alone


def test_generation_stops_at_eos_and_excludes_it(params):
    prompt = [5, 6, 7]
    free = decode.generate(CFG, params, [prompt], 10, **SHAPES)[0]
    eos = free[3]
    stopped = decode.generate(CFG, params, [prompt], 10, eos_id=eos, **SHAPES)[0]
    assert stopped == free[: free.index(eos)]


def test_stop_sequences_end_generation_and_truncate_text(params):
    detok = lambda ids: "".join(chr(97 + i % 26) for i in ids)
    free = decode.generate(CFG, params, [[5, 6, 7]], 24, **SHAPES)[0]
    stop = detok(free)[4:6]
    stops = decode.StopSequences([stop], detok)
    got = decode.generate(CFG, params, [[5, 6, 7]], 24, is_done=stops.is_done, check_every=2, **SHAPES)[0]
    assert len(got) < 24 and stop in detok(got)
    assert stops.truncate(detok(got)) == detok(free)[: detok(free).index(stop)]


def test_sampling_is_reproducible_by_seed_and_respects_valid_vocab(params):
    prompts = [[5, 6, 7]] * 4
    a = decode.generate(CFG, params, prompts, 16, temperature=1.0, seed=3, valid_vocab_size=40, **SHAPES)
    b = decode.generate(CFG, params, prompts, 16, temperature=1.0, seed=3, valid_vocab_size=40, **SHAPES)
    assert a == b
    assert len({tuple(x) for x in a}) > 1  # rows draw different samples
    assert max(max(x) for x in a) < 40


def test_empty_prompt_is_a_clear_error(params):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        decode.generate(CFG, params, [[1], []], 4)


def test_stop_sequences_can_skip_leading_whitespace():
    detok = "".join
    plain = decode.StopSequences(["\n", "."], detok)
    short_answer = decode.StopSequences(["\n", "."], detok, skip_leading_whitespace=True)
    text = "\n Paris.\nQuestion"
    assert plain.truncate(text) == ""
    assert short_answer.truncate(text) == "\n Paris"
    assert not short_answer.is_done(list("\n  "))
    assert short_answer.is_done(list("\nParis\n"))
    assert short_answer.truncate("Rome") == "Rome"
