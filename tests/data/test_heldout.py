"""Held-out sets: fixed documents, packed like training rows, scored in bits per byte."""
import math

import numpy as np
import pytest

from codemix.data import heldout
from codemix.data.readers import DataError
from codemix.eval import perplexity


def _byte_encode(text):
    return [b + 3 for b in text.encode("utf-8")]


def _docs(texts):
    return heldout.HeldOutDocs("text", tuple(heldout.doc_id(t) for t in texts), tuple(texts))


def test_bits_per_byte_of_known_probabilities():
    # Every target has probability 1/2: ln 2 nats per token. With one token
    # per byte (EOS excluded from the bytes) that is exactly 1 bit per byte.
    docs = _docs(["héllo wörld", "abc", "x" * 70])
    packed = heldout.pack(docs, _byte_encode, eos_id=1, sequence_length=16, row_multiple=4)

    def half(params, batch):
        return np.where(batch["decoder_loss_weights"] > 0, math.log(2), 0.0)

    r = perplexity.score_set(packed, None, half, batch_size=4)
    assert r.bpb == pytest.approx(1.0)
    assert r.loss == pytest.approx(math.log(2))
    n_bytes = sum(len(t.encode()) for t in docs.texts)
    assert r.bytes == n_bytes
    assert r.tokens == n_bytes + 3  # + one EOS per document
    assert r.doc_bpb.mean() == pytest.approx(r.bpb)
    assert r.doc_loss.mean() == pytest.approx(r.loss)
    # Per-document NLL is ln 2 per byte of that document.
    np.testing.assert_allclose(r.doc_nll, [math.log(2) * len(t.encode()) for t in docs.texts])


def test_quarter_probability_on_two_byte_tokens():
    # Tokens of 2 bytes each with p = 1/4: 2 bits per token, 1 bit per byte;
    # EOS targets cost 5 bits but carry no bytes, so they count in loss only.
    def encode(text):
        b = text.encode()
        return [3 + b[i] for i in range(0, len(b), 2)]

    docs = _docs(["abcd", "efghij"])
    packed = heldout.pack(docs, encode, eos_id=1, sequence_length=8)

    def nll(params, batch):
        t = batch["decoder_target_tokens"]
        per = np.where(t == 1, 5 * math.log(2), 2 * math.log(2))
        return np.where(batch["decoder_loss_weights"] > 0, per, 0.0)

    r = perplexity.score_set(packed, None, nll, batch_size=1)
    assert r.bpb == pytest.approx(1.0)
    assert r.loss == pytest.approx((5 * 2 + 2 * 5) * math.log(2) / 7)


def test_rows_are_packed_like_training_rows():
    import tensorflow as tf

    from codemix.data.pipeline import _pack_row

    texts = ["one two three", "four", "five six seven eight nine"]
    docs = _docs(texts)
    seq = 8
    packed = heldout.pack(docs, _byte_encode, eos_id=1, sequence_length=seq)
    stream, owner = [], []
    for i, t in enumerate(texts):
        ids = _byte_encode(t) + [1]
        stream += ids
        owner += [i] * len(ids)
    full_rows = len(stream) // seq
    for r in range(full_rows):
        sl = slice(r * seq, (r + 1) * seq)
        want = _pack_row({"tokens": tf.constant(stream[sl]), "doc": tf.constant(owner[sl]),
                          "epoch": tf.zeros([seq], tf.int32)}, seq)
        for k in ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids", "decoder_positions"):
            np.testing.assert_array_equal(getattr(packed, k)[r], want[k].numpy(), err_msg=k)
    # The tail row is padded (weight 0), never dropped.
    assert packed.decoder_loss_weights.sum() == len(stream)
    assert packed.num_rows == -(-len(stream) // seq)


def test_uniform_model_has_log_vocab_loss():
    import jax

    from codemix.model import decoder
    from codemix.model.config import ModelConfig

    cfg = ModelConfig(vocab_size=64, d_model=32, num_layers=1, num_heads=2, num_kv_heads=2, head_dim=16,
                      d_ff=64, dtype="float32", param_dtype="float32")
    params = jax.tree.map(lambda x: x * 0, decoder.init_params(cfg, 0))  # zero logits: uniform
    docs = _docs(["abcdefgh" * 3])
    packed = heldout.pack(docs, lambda t: [3 + (b % 60) for b in t.encode()], 1, 16, row_multiple=2)
    r = perplexity.score_set(packed, params, perplexity.make_nll_fn(cfg), batch_size=2)
    assert r.loss == pytest.approx(math.log(64), rel=1e-5)
    assert r.bpb == pytest.approx(math.log2(64) * 24 / 24, rel=1e-5)


def test_selection_takes_documents_until_the_token_budget():
    texts = ["a" * 10, "b" * 10, "c" * 10, "d" * 10]
    opts = heldout.HeldOutOptions(families=("text",), tokens_per_family=15, max_doc_chars=8)
    docs = heldout.select_documents("text", opts, len, texts=iter(texts))
    # Pieces of at most 8 characters ("aaaaaaaa" = 9 tokens with EOS, "aa" = 3, ...),
    # taken in the order of their hash until 15 tokens.
    pieces = {heldout.doc_id(p): p for t in texts for p in (t[:8], t[8:])}
    want, total = [], 0
    for i in sorted(pieces):
        if total >= 15:
            break
        want.append(pieces[i])
        total += len(pieces[i]) + 1
    assert docs.texts == tuple(want) and docs.ids == tuple(sorted(pieces))[: len(want)]
    assert sum(len(t) + 1 for t in docs.texts) >= 15
    again = heldout.select_documents("text", opts, len, texts=iter(texts))
    assert again == docs


def test_split_too_small_names_its_size():
    opts = heldout.HeldOutOptions(families=("text",), tokens_per_family=1000)
    with pytest.raises(DataError, match=r"has 22 tokens in 2 documents.*tokens_per_family=1000"):
        heldout.select_documents("text", opts, len, texts=iter(["x" * 10, "y" * 10]))


def test_unknown_family_is_named():
    with pytest.raises(DataError, match=r"unknown family \['prose'\].*known families"):
        heldout.check_families(["text", "prose"])


def test_sets_are_fixed_and_disjoint_from_training(data_env):
    import gin
    from codemix.data import corpora

    gin.parse_config(["HeldOutOptions.tokens_per_family = 512"])
    try:
        first = heldout.documents()
        heldout._cached_documents.cache_clear()
        second = heldout.documents()
        assert first == second
        assert set(first) == set(heldout.DEFAULT_FAMILIES)
        for fam in ("text", "code_web"):
            train = {ex["text"].decode()[:4096] for ex in
                     corpora.text_dataset(fam, "train").as_numpy_iterator()}
            assert first[fam].texts and not set(first[fam].texts) & train
    finally:
        heldout._cached_documents.cache_clear()


def test_long_documents_are_cut_at_newlines():
    text = "line one\nline two\nline three\n"
    assert heldout.chunks(text, 12) == ["line one\n", "line two\n", "line three\n"]
    assert "".join(heldout.chunks("x" * 25, 10)) == "x" * 25
    assert [len(c) for c in heldout.chunks("x" * 25, 10)] == [10, 10, 5]
