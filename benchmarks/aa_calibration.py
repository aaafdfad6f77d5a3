"""A/A test of the analysis' intervals on real training runs; prints JSON.

One variant (the demo's text_only: tiny model, 65,536 tokens) trained with
--seeds seeds through the real experiment runner, held-out bits per byte on
every family. Its seeds are split into disjoint groups that are compared as
if they were two variants, with the project's own calls
(`PairedScores.pair`, `stats.seed_noise`, `stats.paired_change`), the seed
noise pooled over the partition's groups as an experiment pools it over its
variants. Every difference is noise, so a calibrated 95% interval excludes 0
in about 5% of the comparisons.

    python benchmarks/aa_calibration.py --workdir runs/aa --seeds 8

Comparisons share groups and seed effects correlate across families, so the
count is not binomial; `exclusion_rate` is reported with the binomial band of
its count for reference, and per group size.
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def train(workdir: Path, seeds: int) -> None:
    cmd = [sys.executable, "-m", "codemix.main", "--log_level", "WARNING", "experiment", "run",
           str(REPO / "gin/experiments/demo.gin"), "--workdir", str(workdir),
           "--gin_param", "Experiment.variants = [@text_only/chain()]",
           "--gin_param", f"Experiment.seeds = {list(range(seeds))}",
           "--gin_param", 'Experiment.eval_benchmarks = ""']
    subprocess.run(cmd, check=True, cwd=REPO)


def comparisons(workdir: Path, group: int, partitions: int, rng: np.random.Generator) -> dict:
    from codemix.analysis import stats
    from codemix.analysis.load import load_experiment
    from codemix.analysis.paired import PairedScores, families, final_runs, heldout

    data = load_experiment(workdir)
    runs = final_runs(data, "text_only")
    scores = PairedScores.of(data)
    fams = families(data)
    n_groups = len(runs) // group
    excluded = total = 0
    seen = set()
    for _ in range(partitions):
        order = list(rng.permutation(runs))
        groups = [tuple(sorted(order[i * group:(i + 1) * group])) for i in range(n_groups)]
        for fam in fams:
            m = heldout(fam)
            sets = {g: scores.pair(list(g), [], m).variant for g in groups}
            # the experiment's pooled seed noise: every group of this partition (with 2+ seeds)
            pool_groups = groups if group >= 2 else [tuple(sorted(order[i:i + 2])) for i in range(0, len(order) - 1, 2)]
            noise = stats.seed_noise([scores.pair(list(g), [], m).variant for g in pool_groups])
            for a, b in itertools.combinations(groups, 2):
                key = (fam, a, b)
                if key in seen:
                    continue
                seen.add(key)
                ch = stats.paired_change(sets[a], sets[b], noise=noise)
                total += 1
                excluded += ch.excludes_zero
    rate = excluded / total if total else float("nan")
    band = 1.96 * np.sqrt(0.05 * 0.95 / total) if total else float("nan")
    return {"group_size": group, "comparisons": total, "excluded": excluded, "exclusion_rate": rate,
            "binomial_band_95": [0.05 - band, 0.05 + band]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="runs/aa")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--partitions", type=int, default=30, help="random partitions of the seeds per group size")
    ap.add_argument("--skip_training", action="store_true", help="analyse runs already in --workdir")
    args = ap.parse_args()
    workdir = Path(args.workdir).resolve()
    if not args.skip_training:
        train(workdir, args.seeds)
    rng = np.random.default_rng(0)
    out = {"seeds": args.seeds, "by_group_size": [comparisons(workdir, g, args.partitions, rng)
                                                  for g in (1, 2, 3) if args.seeds // g >= 2]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
