"""Coverage of the joint scale x mixture law's optimum interval, on synthetic ladders with a known answer.

Ladders of 4 sizes (20M-300M) x 2 budgets (10 and 20 tokens per parameter) x 5 code shares x 2 seeds
are drawn from the joint law of tests/analysis/test_scale_law.py with Gaussian run noise (sd 0.01);
each is fitted (joint form, 200 bootstrap laws) and its 95% interval for the optimal code share at
2.8B x 56B is checked against the true optimum. Prints JSON: coverage, median width, seconds per fit.

    python benchmarks/scale_law_coverage.py --ladders 100
"""
import argparse
import json
import time

import numpy as np

from codemix.analysis import scale_law as sl
from tests.analysis.test_scale_law import FAMS, _ladder, _law, _true_optimum


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ladders", type=int, default=100)
    ap.add_argument("--resamples", type=int, default=200)
    ap.add_argument("--noise", type=float, default=0.01)
    args = ap.parse_args()
    n, d, s = _ladder()
    truth = float(_true_optimum(2.8e9, 56e9))
    hits, widths, secs = 0, [], []
    for r in range(args.ladders):
        y = _law(n, d, s) + args.noise * np.random.default_rng(r).standard_normal(len(n))
        t = time.time()
        law = sl.fit_joint(n, d, np.column_stack([1 - s, s]), y, "joint", FAMS, resamples=args.resamples,
                           rng_seed=r, loo=False)
        o = sl.optimum({"loss": law}, 2.8e9, 56e9)
        secs.append(time.time() - t)
        hits += o.low["code"] <= truth <= o.high["code"]
        widths.append(o.high["code"] - o.low["code"])
    print(json.dumps({"ladders": args.ladders, "resamples": args.resamples, "true_optimum": truth,
                      "coverage": hits / args.ladders, "median_width": float(np.median(widths)),
                      "seconds_per_fit": float(np.median(secs))}))


if __name__ == "__main__":
    main()
