"""Held-out loss and bits per byte on the fixed per-family sets.

For one family's packed set (codemix/data/heldout.py), every target slot gets
its negative log-likelihood in nats from one forward pass. Then

    loss = sum of NLL over all targets / number of targets       (nats per token)
    bpb  = sum of NLL over non-EOS targets / (ln 2 * UTF-8 bytes)  (bits per byte)

EOS targets carry no bytes of the text, so they are left out of bits per byte
(and kept in the loss, which matches the training loss). Because bytes are
those of the original text, bpb is comparable across vocabularies.

Per-document values for paired statistics: document d gets

    bpb_d = NLL_d / (ln 2 * mean bytes per document)

so the plain mean of bpb_d over the set's documents is exactly the family's
bpb, and two runs are paired document by document (the denominator is the same
for every run; resampling documents with it fixed is the usual linearisation
of a ratio estimator).

Sharding: `make_nll_fn` jits the forward pass with the given parameter and
batch shardings (the training ones in the train loop), rows are split over
the mesh's data axes, and every process feeds its slice of the identical
global rows, so N processes compute exactly the numbers one process does.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from codemix import pytree
from codemix.eval import mesh as eval_mesh
from codemix.model import decoder
from codemix.model.config import ModelConfig

_FEATURES = ("decoder_input_tokens", "decoder_target_tokens", "decoder_segment_ids",
             "decoder_positions", "decoder_loss_weights")


@dataclasses.dataclass(frozen=True)
class FamilyResult:
    family: str
    loss: float  # nats per target token
    bpb: float  # bits per UTF-8 byte
    tokens: int
    bytes: int
    ids: tuple[str, ...]
    doc_bpb: np.ndarray  # per-document contributions; mean == bpb
    doc_nll: np.ndarray  # nats, non-EOS targets
    doc_bytes: np.ndarray
    doc_loss: np.ndarray  # per-document contributions to `loss`; mean == loss

    def metrics(self) -> dict[str, float]:
        return {f"val/{self.family}/loss": self.loss, f"val/{self.family}/bpb": self.bpb}

    def to_json(self) -> dict:
        return {"loss": self.loss, "bpb": self.bpb, "tokens": self.tokens, "bytes": self.bytes,
                "ids": list(self.ids), "doc_bpb": self.doc_bpb.tolist(),
                "doc_nll": self.doc_nll.tolist(), "doc_bytes": self.doc_bytes.tolist(),
                "doc_loss": self.doc_loss.tolist()}


def _nll(cfg: ModelConfig, params, batch):
    logits, _ = decoder.apply(cfg, params, batch["decoder_input_tokens"], batch["decoder_segment_ids"],
                              batch["decoder_positions"])
    logits = logits.astype(jnp.float32)
    targets = batch["decoder_target_tokens"]
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = jax.nn.logsumexp(logits, axis=-1) - picked
    return nll * batch["decoder_loss_weights"]


def make_nll_fn(cfg: ModelConfig, param_sharding=None, batch_sharding=None, mesh=None):
    """jit(params, batch) -> per-slot NLL [rows, length], fully replicated.

    The same function object for the same (config, shardings), so the runs of
    an experiment in one process share its compiled program."""
    if mesh is None:
        return _jitted_nll(cfg, None)
    return _jitted_nll(cfg, mesh, *(pytree.hashable(param_sharding) + pytree.hashable(batch_sharding)))


@functools.lru_cache(maxsize=8)
def _jitted_nll(cfg: ModelConfig, mesh, *sharding_key):
    fn = lambda params, batch: _nll(cfg, params, batch)  # noqa: E731
    if mesh is None:
        return jax.jit(fn)
    p_def, p_leaves, b_def, b_leaves = sharding_key
    shardings = (jax.tree.unflatten(p_def, list(p_leaves)), jax.tree.unflatten(b_def, list(b_leaves)))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(fn, in_shardings=shardings, out_shardings=replicated)


def _put(rows: dict[str, np.ndarray], batch_sharding) -> dict:
    if batch_sharding is None:
        return {k: jnp.asarray(v) for k, v in rows.items()}
    # Each process hands over the rows its devices hold (identical global rows everywhere).
    return {k: eval_mesh.put_global(v, batch_sharding[k]) for k, v in rows.items()}


def row_nll(feats: dict[str, np.ndarray], params, nll_fn, batch_size: int, batch_sharding=None) -> np.ndarray:
    """Per-slot NLL of `feats` rows, `batch_size` rows per call (the tail batch
    is padded with weight-0 rows, so every call has one compiled shape)."""
    rows = next(iter(feats.values())).shape[0]
    pad = -rows % batch_size
    if pad:
        feats = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in feats.items()}
    nll = np.zeros(feats["decoder_target_tokens"].shape, np.float64)
    for lo in range(0, rows + pad, batch_size):
        batch = {k: v[lo : lo + batch_size] for k, v in feats.items()}
        nll[lo : lo + batch_size] = np.asarray(jax.device_get(nll_fn(params, _put(batch, batch_sharding))))
    return nll[:rows]


def score_set(packed, params, nll_fn, batch_size: int, batch_sharding=None, nll=None) -> FamilyResult:
    """Loss and bpb of one packed family set (see the module doc); `nll` are
    its rows' per-slot NLLs when already computed."""
    if nll is None:
        nll = row_nll(packed.features(), params, nll_fn, batch_size, batch_sharding)
    valid = packed.doc >= 0
    n_docs = len(packed.docs.texts)
    text_slots = valid & ~packed.eos
    doc_nll = np.bincount(packed.doc[text_slots], weights=nll[text_slots], minlength=n_docs)
    doc_bytes = packed.docs.num_bytes
    total_bytes = int(doc_bytes.sum())
    tokens = int(valid.sum())
    loss = float(nll[valid].sum() / max(tokens, 1))
    bpb = float(doc_nll.sum() / (math.log(2) * max(total_bytes, 1)))
    mean_bytes = total_bytes / max(n_docs, 1)
    doc_bpb = doc_nll / (math.log(2) * max(mean_bytes, 1e-9))
    all_nll = np.bincount(packed.doc[valid], weights=nll[valid], minlength=n_docs)
    doc_loss = all_nll / max(tokens / max(n_docs, 1), 1e-9)
    return FamilyResult(packed.family, loss, bpb, tokens, total_bytes, packed.docs.ids,
                        doc_bpb, doc_nll, doc_bytes, doc_loss)


class HeldOutEvaluator:
    """Packs the held-out sets once for a vocabulary and scores params on them."""

    def __init__(self, cfg: ModelConfig, encode, eos_id: int, sequence_length: int, batch_size: int,
                 docs: dict, param_sharding=None, batch_sharding=None, mesh=None):
        from codemix.data import heldout

        self.batch_size = batch_size
        self.batch_sharding = batch_sharding
        self.sets = {f: heldout.pack(d, encode, eos_id, sequence_length) for f, d in docs.items()}
        self.nll_fn = make_nll_fn(cfg, param_sharding, batch_sharding, mesh)

    def __call__(self, params) -> dict[str, FamilyResult]:
        # All families' rows go through in one stream of full batches (padding
        # only at the very end), then each family's slice is scored.
        names = list(self.sets)
        feats = {k: np.concatenate([self.sets[f].features()[k] for f in names]) for k in _FEATURES}
        nll = row_nll(feats, params, self.nll_fn, self.batch_size, self.batch_sharding)
        out, lo = {}, 0
        for f in names:
            n = self.sets[f].num_rows
            out[f] = score_set(self.sets[f], params, self.nll_fn, self.batch_size, nll=nll[lo : lo + n])
            lo += n
        return out


def flat_metrics(results: dict[str, FamilyResult]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in results.values():
        out.update(r.metrics())
    return out


def records(results: dict[str, FamilyResult], run: str, step: int) -> tuple[list[dict], dict]:
    """results.json records (benchmark "heldout:<family>", category "perplexity")
    and per-example values ({benchmark: {"ids", "bpb"}}) of held-out results."""
    from codemix.eval import metrics

    recs, per_example = [], {}
    for f, r in results.items():
        name = f"heldout:{f}"
        for metric, value, per_doc in (("loss", r.loss, r.doc_loss), ("bpb", r.bpb, r.doc_bpb)):
            ci = metrics.percentile_interval(metrics.bootstrap_replicates(per_doc, 1000, seed=0))
            recs.append({"run": run, "step": step, "benchmark": name, "category": "perplexity",
                         "metric": metric, "value": value, "n": len(r.ids), "ci": ci})
        per_example[name] = {"ids": list(r.ids), "bpb": r.doc_bpb.tolist(), "loss": r.doc_loss.tolist()}
    return recs, per_example


def evaluate_model(cfg: ModelConfig, params, vocab, docs: dict, sequence_length: int,
                   batch_size: int) -> dict[str, FamilyResult]:
    """Held-out results of one model tokenized with its own vocabulary, on the
    mesh its params live on (`batch_size` rounded up to the row shards) or on
    one device."""
    mesh = eval_mesh.mesh_of(params)
    shardings = {}
    if mesh is not None:
        batch_size = eval_mesh.round_rows(batch_size, mesh)
        rows = eval_mesh.row_sharding(mesh)
        shardings = {"param_sharding": jax.tree.map(lambda x: x.sharding, params),
                     "batch_sharding": {k: rows for k in _FEATURES}, "mesh": mesh}
    ev = HeldOutEvaluator(cfg, lambda t: vocab.encode(t), vocab.eos_id, sequence_length, batch_size, docs,
                          **shardings)
    return ev(params)
