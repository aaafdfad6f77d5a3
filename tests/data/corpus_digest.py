"""Prepare local corpora and print a digest of what was prepared, as JSON.

test_declared_sources.py runs this in a second Python environment (one with
unrelated packages installed) and compares its digest with the one prepared in
the test's own environment:
  python -m tests.data.corpus_digest DATA_DIR MAX_BYTES FAMILY[,FAMILY...]
"""
import hashlib
import importlib.metadata
import json
import os
import sys
import sysconfig


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _records(path: str) -> str:
    """Hash of a TFRecord file's records in file order, each serialized
    deterministically (protobuf's default map order differs between processes)."""
    import tensorflow as tf

    h = hashlib.sha256()
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        h.update(tf.train.Example.FromString(raw).SerializeToString(deterministic=True))
    return h.hexdigest()


def digest(data_dir: str, max_bytes: int, families: list[str]) -> dict:
    """Per family: its fingerprint, its stats, its TFRecord files' records and
    its documents (text hash, source, path) in each split, in stored order."""
    from codemix.data import corpora, corpus

    options = corpus.CorpusOptions(data_dir=data_dir, local_max_bytes=max_bytes)
    out = {}
    for family in families:
        builder = corpora.prepare(family, options)
        records = {}
        for root, _, names in os.walk(builder.data_dir):
            for name in names:
                if ".tfrecord" in name:
                    records[name] = _records(os.path.join(root, name))
        documents = {
            split: [[_sha(r["text"]), r["source"].decode(), r["path"].decode()]
                    for r in corpora.text_dataset(family, split, options=options).as_numpy_iterator()]
            for split in ("train", "validation")
        }
        out[family] = {"fingerprint": options.fingerprint(family), "stats": corpora.stats(family, options),
                       "tfrecords": records, "documents": documents}
    return json.loads(json.dumps(out))


def environment() -> dict:
    """Where this interpreter installs packages, and every distribution it sees."""
    names = sorted({d.metadata["Name"] for d in importlib.metadata.distributions()})
    return {"purelib": sysconfig.get_paths()["purelib"], "distributions": names}


if __name__ == "__main__":
    data_dir, max_bytes, families = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    print(json.dumps({"environment": environment(), "corpora": digest(data_dir, max_bytes, families)}))
