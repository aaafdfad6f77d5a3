"""What an experiment printed at its end: per variant and seed, the final
run's last loss, held-out bits per byte and evaluation categories, and where
the runs' wall time went (phases of codemix/train/phases.py)."""
from __future__ import annotations

import json
from typing import Sequence

from etils.epath import Path

from codemix.experiments.matrix import Variant, final_run, variant_seeds


def summarize(root: Path, variants: Sequence[Variant], seeds: Sequence[int] = (0,)) -> list[dict]:
    """Per variant and seed: its final run's last logged loss per source, held-out
    bits per byte per family, and eval categories."""
    from codemix.train.metrics import read_metrics

    rows = []
    for v, seed in ((var, s) for var in variants for s in variant_seeds(var, seeds)):
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


def format_phases(root: Path, runs: Sequence[str] | None = None) -> str:
    """The phases of the runs (run_info.json), summed: seconds and share of wall
    time per phase, then compile seconds and cache hits per run."""
    from codemix.analysis import phases

    frame = phases.run_phases(root, runs)
    if not len(frame):
        return "time per phase: no run recorded its phases"
    totals = phases.phase_totals(frame).to_string(index=False, float_format=lambda x: f"{x:.1f}")
    per_run = phases.per_run_compile(frame)
    per_run["run"] = per_run["run"].str.slice(0, 58)
    return "\n".join(["time per phase, summed over runs: " + phases.describe(frame), totals, "",
                      per_run.to_string(index=False, float_format=lambda x: f"{x:.1f}")])
