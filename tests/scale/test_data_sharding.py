"""Each host reads a disjoint shard of the data (its data lanes, pipeline.py):
with 2 lanes and 2 processes, process i reads the documents whose index in
the task's (unshuffled) document order is congruent to i mod 2. The
two document sets are disjoint and their union is the whole train split, and
every row a host yields is cut from its own documents only."""
import numpy as np
import seqio

import codemix.registry  # noqa: F401  (registers the local_text task)
from codemix.data.pipeline import _task_documents, make_train_iterator

TASK = "local_text"
EOS = 1  # seqio.ByteVocabulary: 0 pad, 1 EOS, 2 UNK, byte b -> b + 3


def _doc_bytes(shard) -> list[bytes]:
    out = []
    for ex in _task_documents(TASK, "train", shard).as_numpy_iterator():
        ids = ex["targets"]
        out.append((ids[ids >= 3] - 3).astype(np.uint8).tobytes())
    return out


def test_hosts_read_disjoint_documents_whose_union_is_the_split():
    everything = _doc_bytes(None)
    shards = [_doc_bytes(seqio.ShardInfo(index=i, num_shards=2)) for i in range(2)]
    assert shards[0] and shards[1]
    assert shards[0] == everything[0::2] and shards[1] == everything[1::2]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(everything)


def test_each_host_rows_come_from_its_own_documents():
    texts = [b"\x00".join(_doc_bytes(seqio.ShardInfo(index=i, num_shards=2))) for i in range(2)]
    checked = 0
    for host in range(2):
        it = make_train_iterator(mixture=TASK, sequence_length=64, batch_size=8, seed=0,
                                 lanes=2, process_index=host, process_count=2)
        assert it.local_batch_size == 4 and it.global_batch_size == 8
        for _ in range(5):
            batch = next(it)
            assert batch["decoder_target_tokens"].shape == (4, 64)
            for row, seg_row in zip(batch["decoder_target_tokens"], batch["decoder_segment_ids"]):
                for seg in np.unique(seg_row):
                    ids = row[seg_row == seg]
                    piece = (ids[ids != EOS] - 3).astype(np.uint8).tobytes()
                    assert piece in texts[host], (host, piece)
                    if len(piece) >= 40:  # long enough to be unique to one speech
                        assert piece not in texts[1 - host], (host, piece)
                        checked += 1
    assert checked >= 20
