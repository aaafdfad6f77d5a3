"""`codemix experiment status W`: where every run of a submitted experiment stands.

Per run (from plan.json, in dependency order): its state, the job that runs it
(jobs.json), its last logged step and tokens (metrics.jsonl), its trainer's
last heartbeat (run.lock), and for the experiment the critical path left: the
longest chain of steps still to train, parent to child, which bounds how soon
the job graph can finish however many slices run it.

States: finished (lineage says so); running (a lock whose heartbeat is fresh);
stale (a lock whose heartbeat is older than the lock's stale time: its trainer
is probably gone and the next start takes the lock over); interrupted
(started, no live trainer: a requeued or resubmitted job resumes it); ready
(parent finished or none, not started); waiting (parent not finished).
"""
from __future__ import annotations

import json
import time

from etils import epath

from codemix.errors import ExperimentError
from codemix.experiments.jobs import read_jobs
from codemix.train.run_lock import LOCK_NAME, STALE_S


def _last_metrics(path: epath.Path) -> dict | None:
    f = path / "metrics.jsonl"
    if not f.exists():
        return None
    for line in reversed(f.read_text().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def _json(f: epath.Path) -> dict | None:
    try:
        return json.loads(f.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def collect(workdir, now: float | None = None) -> dict:
    """{"runs": [per-run rows], "critical_path_steps": int, "critical_path": [run names]}."""
    root = epath.Path(workdir)
    plan = _json(root / "plan.json")
    if plan is None:
        raise ExperimentError(f"{root} has no readable plan.json: it is not an experiment workdir. Pass the "
                              f"--workdir given to `codemix experiment submit` or `run`.")
    now = time.time() if now is None else now
    jobs = read_jobs(root)
    rows, by_name = [], {}
    for p in plan:
        d = root / "runs" / p["run"]
        lineage = _json(d / "lineage.json") or {}
        lock = _json(d / LOCK_NAME)
        m = _last_metrics(d)
        step = int(m["step"]) if m else 0
        beat = now - float(lock["heartbeat"]) if lock and "heartbeat" in lock else None
        parent_done = p["parent"] is None or by_name[p["parent"]]["state"] == "finished"
        if lineage.get("status") == "finished":
            state = "finished"
        elif lock is not None:
            state = "running" if beat is not None and beat <= STALE_S else "stale"
        elif lineage or m:
            state = "interrupted"
        else:
            state = "ready" if parent_done else "waiting"
        row = {"run": p["run"], "parent": p["parent"], "state": state,
               "job_id": (jobs.get(p["run"]) or {}).get("job_id") or (lock or {}).get("job_id"),
               "step": step, "steps": p["steps"], "tokens": m.get("tokens") if m else 0,
               "heartbeat_s_ago": None if beat is None else round(beat, 1),
               "host": (lock or {}).get("host")}
        rows.append(row)
        by_name[p["run"]] = row
    left: dict[str, tuple[int, list[str]]] = {}  # run -> (steps left through it, the chain)
    for row in rows:  # plan order is dependency order
        own = 0 if row["state"] == "finished" else max(row["steps"] - row["step"], 0)
        before, chain = left.get(row["parent"], (0, [])) if row["parent"] else (0, [])
        left[row["run"]] = (before + own, chain + [row["run"]] if own else chain)
    steps, chain = max(left.values(), default=(0, []), key=lambda v: v[0])
    return {"runs": rows, "critical_path_steps": steps, "critical_path": chain}


def format_status(doc: dict) -> str:
    head = f"{'state':12s} {'job':>8s} {'step':>13s} {'tokens':>10s} {'heartbeat':>10s}  run"
    lines = [head, "-" * len(head)]
    for r in doc["runs"]:
        beat = "-" if r["heartbeat_s_ago"] is None else f"{r['heartbeat_s_ago']:.0f} s ago"
        lines.append(f"{r['state']:12s} {r['job_id'] or '-'!s:>8s} {r['step']:>6d}/{r['steps']:<6d} "
                     f"{r['tokens'] or 0:10.3g} {beat:>10s}  {r['run']}")
    counts: dict[str, int] = {}
    for r in doc["runs"]:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    lines.append(f"critical path left: {doc['critical_path_steps']} steps"
                 + (f" ({' -> '.join(doc['critical_path'])})" if doc["critical_path"] else ""))
    return "\n".join(lines)
