"""SentencePiece vocabularies keep code intact."""
import json

from codemix.data import vocab

CODE = "def f(x):\n\tif x > 10:\n        return x * 12345  # note\n\n    return  -x\n"


def test_default_vocabulary_round_trips_code_exactly(data_env):
    v = vocab.VOCABULARY
    assert v.vocab_size == 1024
    ids = v.encode(CODE)
    assert v.decode(ids) == CODE
    pieces = [v.tokenizer.id_to_piece(i) for i in ids]
    assert "\n" in pieces and "\t" in pieces
    digits = [p for p in pieces if any(c.isdigit() for c in p)]
    assert all(len(p.strip("▁")) == 1 for p in digits)  # digits split


def test_unseen_characters_fall_back_to_bytes(data_env):
    v = vocab.VOCABULARY
    text = "snow ☃ and 🐍"
    ids = v.encode(text)
    assert 2 not in ids  # no UNK
    assert v.decode(ids) == text


def test_vocab_train_command_writes_a_loadable_model(data_env, tmp_path, capsys):
    from tests.data.cli_helper import main

    out = tmp_path / "v.model"
    params = [f"--gin_param=CorpusOptions.data_dir='{data_env / 'tfds'}'",
              "--gin_param=CorpusOptions.local_max_bytes=300000"]
    rc = main(["vocab", "train", "--mixture", "code_p25", "--size", "600", "--output", str(out),
               "--sample_bytes", "200000"] + params)
    assert rc == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["shares"] == {"code_web": 0.25, "text": 0.75}
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(out))
    assert sp.get_piece_size() == 600 and sp.decode(sp.encode(CODE)) == CODE


def test_explicit_model_path_is_used(data_env, tmp_path):
    import gin

    path = tmp_path / "mine.model"
    vocab.train(iter(["hello world\n" * 50, "def f():\n    pass\n" * 50]), 300, str(path))
    gin.parse_config([f"VocabOptions.path = '{path}'"])
    v = vocab.CodemixVocabulary()
    assert v.vocab_size == 300 and v.sentencepiece_model_file == str(path)
