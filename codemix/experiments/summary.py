"""What an experiment printed at its end: per variant and seed, the final
run's last loss, held-out bits per byte and evaluation categories, and the
time spent in train steps against the in-loop held-out evaluation."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from codemix.experiments.matrix import Variant, final_run


def summarize(root: Path, variants: Sequence[Variant], seeds: Sequence[int] = (0,)) -> list[dict]:
    """Per variant and seed: its final run's last logged loss per source, held-out
    bits per byte per family, and eval categories."""
    from codemix.train.metrics import read_metrics

    rows = []
    for v, seed in ((v, s) for v in variants for s in seeds):
        path = Path(root) / "runs" / final_run(v, seed)
        m = read_metrics(str(path))
        last = m[-1] if m else {}
        name = v.name if len(seeds) == 1 else f"{v.name} s{seed}"
        row = {"variant": name, "run": final_run(v, seed), "step": last.get("step"),
               "loss": last.get("loss")}
        row.update({k: val for k, val in last.items() if k.startswith("val/") and k.endswith("/bpb")})
        ev = path / "eval.json"
        if ev.exists():
            for rec in json.loads(ev.read_text()).get("records", []):
                if rec["benchmark"].startswith("category:"):
                    row[f"eval/{rec['category']}"] = rec["value"]
        rows.append(row)
    return rows


def format_summary(rows: list[dict]) -> str:
    cols = sorted({k for r in rows for k in r if k.startswith(("val/", "eval/"))})
    def label(c: str) -> str:
        parts = c.split("/")
        return ("bpb " + parts[1] if parts[0] == "val" else parts[-1])[:14]

    head = f"{'variant':32s} {'loss':>7s} " + " ".join(f"{label(c):>14s}" for c in cols)
    out = [head, "-" * len(head)]
    for r in rows:
        loss = f"{r['loss']:7.3f}" if r.get("loss") is not None else f"{'-':>7s}"
        vals = " ".join(f"{r[c]:14.3f}" if isinstance(r.get(c), (int, float)) else f"{'-':>14s}"
                        for c in cols)
        out.append(f"{r['variant'][:32]:32s} {loss} {vals}")
    return "\n".join(out)


def format_costs(lineages: dict[str, dict]) -> str:
    """One line: train-step seconds, held-out evaluation seconds and their ratio."""
    train = sum(float(lin.get("train_seconds") or 0.0) for lin in lineages.values())
    held = sum(float(lin.get("heldout_seconds") or 0.0) for lin in lineages.values())
    if train <= 0:
        return "held-out evaluation: no timing recorded"
    return (f"train steps {train:.0f} s, in-loop held-out evaluation {held:.0f} s "
            f"({100 * held / train:.1f}% of training)")
