"""One process of the 2-process evaluation test (tests/eval/test_mesh_eval.py).

    python -m tests.eval.mesh_eval_worker HOST:PORT NUM_PROCESSES PROCESS_ID OUT.json

joins jax.distributed with gloo CPU collectives, shards a fixed tiny model over
all processes' devices (fsdp) and writes what this process gets from scoring,
greedy generation and held-out perplexity. The fixtures and `evaluate` are
shared with the single-device reference in the test.
"""
import json
import sys

import numpy as np

from codemix.model.config import ModelConfig

CFG = ModelConfig(vocab_size=384, d_model=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  head_dim=16, d_ff=128)


def requests():
    """Multiple-choice-shaped requests (shared contexts), long enough for two row lengths."""
    from codemix.eval.scoring import Request

    rng = np.random.default_rng(0)
    out = []
    for q in range(11):
        ctx = tuple(int(t) for t in rng.integers(3, 300, size=int(rng.integers(4, 90))))
        for _ in range(3):
            cont = tuple(int(t) for t in rng.integers(3, 300, size=int(rng.integers(1, 12))))
            out.append(Request(ctx, cont))
    return out


def choices(scores) -> list[int]:
    return [int(i) for i in np.asarray(scores).reshape(-1, 3).argmax(axis=1)]


def prompts() -> list[list[int]]:
    rng = np.random.default_rng(1)
    return [[int(t) for t in rng.integers(3, 259, size=n)] for n in (3, 17, 9, 30, 5)]


def heldout_docs() -> dict:
    from codemix.data import heldout

    texts = {"text": ["The cat sat on the mat. " * 3, "Rivers run to the sea.", "A short one."],
             "code_web": ["def f(x):\n    return x + 1\n", "for i in range(3):\n    print(i)\n"]}
    return {f: heldout.HeldOutDocs(f, tuple(heldout.doc_id(t) for t in ts), tuple(ts))
            for f, ts in texts.items()}


def evaluate(params) -> dict:
    """Scores, choices, greedy generations and held-out numbers of `params`
    (on whatever mesh they live, or one device)."""
    import jax
    import seqio

    from codemix.eval import mesh as eval_mesh
    from codemix.eval import perplexity, scoring
    from codemix.model import decode

    scores = scoring.score_packed(CFG, params, requests(), row_len=64, batch_size=3, max_row_len=128)
    generated = decode.generate(CFG, params, prompts(), 12, batch_size=3, pad_multiple=16, eos_id=1,
                                placement=eval_mesh.placement(params))
    held = perplexity.evaluate_model(CFG, params, seqio.ByteVocabulary(), heldout_docs(),
                                     sequence_length=32, batch_size=3)
    return {"scores": scores.tolist(), "choices": choices(scores), "generated": generated,
            "heldout": [v for r in held.values() for v in (r.loss, r.bpb, *r.doc_nll.tolist())],
            "processes": jax.process_count(), "devices": jax.device_count(),
            "row_multiple": eval_mesh.row_multiple(eval_mesh.mesh_of(params))}


def main(argv) -> int:
    address, processes, pid, out = argv[0], int(argv[1]), int(argv[2]), argv[3]
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=address, num_processes=processes, process_id=pid)
    from codemix.eval import mesh as eval_mesh
    from codemix.model import decoder
    from codemix.train import partitioning

    mesh = partitioning.make_mesh(fsdp=-1)
    params = eval_mesh.place_params(CFG, decoder.init_params(CFG, seed=0), mesh)
    result = evaluate(params)
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
