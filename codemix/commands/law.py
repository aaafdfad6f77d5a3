"""`codemix law`: fit mixture laws to an experiment's runs, propose the next mixtures.

    codemix law fit runs/demo --target val/text/bpb --target val/code_web/bpb
    codemix law propose runs/demo --objective "min val/text/bpb; val/code_web/bpb <= 2.5" \\
        --output gin/mixtures/law_opt.gin --explore 2

Target and objective syntax: codemix/analysis/law_experiment.py and
codemix/analysis/mixture_optimum.py. `propose` writes the optimum to --output
and the K exploratory mixtures next to it as <name>_explore<i>.gin, each with
a <name>.law.json prediction that `codemix report` checks once it is trained.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _bound(text: str) -> tuple[str, tuple[float, float]]:
    try:
        fam, rng = text.split("=", 1)
        lo, hi = rng.split(":", 1)
        return fam, (float(lo), float(hi))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bound {text!r}: write FAMILY=LOW:HIGH, e.g. code_web=0:0.5") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="law_command", required=True, metavar="{fit,propose}")
    f = sub.add_parser("fit", help="fit a law per target; parameters, leave-one-out error, optimum")
    p = sub.add_parser("propose", help="write mixture gin files for the optimum and K exploratory points")
    for s in (f, p):
        s.add_argument("experiment_dir", metavar="DIR", help="workdir of `codemix experiment run`")
        s.add_argument("--form", default="exp", choices=("exp", "linear", "loglinear"),
                       help="law form (default exp, Ye et al. 2024); LOO of every form is printed by fit")
        s.add_argument("--variants", nargs="+", default=None,
                       help="fit only these variants' runs (default: every from-scratch run at one budget)")
        s.add_argument("--resamples", type=int, default=500, help="bootstrap laws (default 500)")
        s.add_argument("--bound", type=_bound, action="append", default=[], metavar="FAMILY=LO:HI",
                       help="share bounds of the optimum search (default: the range the runs cover)")
    f.add_argument("--target", action="append", required=True,
                   help="repeatable: val/<family>/bpb, <benchmark>/<metric>, <category>/<metric>, a metrics key")
    f.add_argument("--objective", default=None, help="also the optimum of this objective, e.g. 'min val/text/bpb'")
    f.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--objective", required=True,
                   help="'min|max W*TARGET + ...; TARGET <= X', e.g. 'max reasoning/prob_correct'")
    p.add_argument("--output", required=True, help="mixture gin to write, e.g. gin/mixtures/law_opt.gin")
    p.add_argument("--force", action="store_true",
                   help="propose from a law that fails its lack-of-fit test (refused by default)")
    p.add_argument("--explore", type=int, default=0, metavar="K",
                   help="also K exploratory mixtures where the bootstrap laws disagree most (default 0)")


def _fmt(x: float) -> str:
    return "missing" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _optimum_dict(opt) -> dict:
    return {"shares": opt.as_dict(), "low": dict(zip(opt.families, map(float, opt.shares_low))),
            "high": dict(zip(opt.families, map(float, opt.shares_high))), "objective": opt.objective,
            "predicted": {t: list(v) for t, v in opt.predicted.items()},
            "feasible_fraction": opt.feasible_fraction}


def _fit(args, data) -> int:
    from codemix.analysis import law_experiment as le
    from codemix.analysis import mixture_law as ml
    from codemix.analysis import mixture_optimum as mo

    bounds = dict(args.bound)
    obj = mo.Objective.parse(args.objective) if args.objective else None
    targets = list(dict.fromkeys([*args.target, *(obj.targets if obj else [])]))
    laws, runs = le.fit_experiment(data, targets, args.form, args.resamples, args.variants)
    out = {"experiment": data.name, "runs": runs["run"].tolist(), "families": list(le.share_columns(runs)),
           "form": args.form, "targets": {}}
    for t, law in laws.items():
        loo = {}
        for form in ml.FORMS:
            try:
                loo[form] = law.loo if form == args.form else le.fit_experiment(
                    data, [t], form, 0, args.variants)[0][t].loo
            except ml.LawError as e:
                loo[form] = f"not fitted: {e}"
        opt = mo.law_optimum(law, le.default_sense(t), bounds)
        out["targets"][t] = {"params": {n: list(v) for n, v in law.param_intervals().items()},
                             "varying": list(law.varying), "reference": law.reference, "fixed": dict(law.fixed),
                             "n_runs": law.n_runs, "n_points": law.n_points, "bootstrap": law.bootstrap,
                             "loo": loo, "loo_vertex": law.loo_vertex, "fit_p": law.fit_p, "misfit": law.misfit,
                             "fit": law.fit_summary(), "optimum": {"sense": le.default_sense(t), **_optimum_dict(opt)}}
    if obj:
        out["objective"] = {"label": str(obj), **_optimum_dict(mo.optimum(laws, obj, bounds))}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{data.name}: {len(runs)} runs over {out['families']} ({args.form} law, "
          f"{args.resamples} bootstrap laws; 95% intervals)")
    for t, r in out["targets"].items():
        print(f"\n{t}: {r['n_points']} mixtures, {r['n_runs']} runs, bootstrap over {r['bootstrap']}; "
              f"reference family {r['reference']} (its t/b fixed at 0)")
        for n, (v, lo, hi) in r["params"].items():
            print(f"  {n:<16} {_fmt(v):>10}  [{_fmt(lo)}, {_fmt(hi)}]")
        numeric = {f: v for f, v in r["loo"].items() if isinstance(v, float) and math.isfinite(v)}
        best = min(numeric, key=numeric.get) if numeric else None
        print("  leave-one-out RMSE over interior mixtures: " + ", ".join(
            f"{f} {_fmt(v) if isinstance(v, float) else v}{' (best)' if f == best else ''}"
            for f, v in r["loo"].items()))
        print(f"  leave-one-out RMSE at the sweep's ends (extrapolated): {_fmt(r['loo_vertex'])}")
        print(f"  fit: {r['fit']}")
        _print_optimum(f"{r['optimum']['sense']} {t}", r["optimum"])
    if "objective" in out:
        _print_optimum(out["objective"]["label"], out["objective"])
    return 0


def _print_optimum(label: str, o: dict) -> None:
    shares = ", ".join(f"{f} {v:.3f} [{o['low'][f]:.3f}, {o['high'][f]:.3f}]" for f, v in o["shares"].items())
    preds = "; ".join(f"{t} {_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]" for t, (v, lo, hi) in o["predicted"].items())
    print(f"  optimum of '{label}': {shares}; predicted {preds}")


def _propose(args, data) -> int:
    from codemix.analysis import law_experiment as le
    from codemix.analysis import mixture_optimum as mo

    obj = mo.Objective.parse(args.objective)
    laws, runs = le.fit_experiment(data, obj.targets, args.form, args.resamples, args.variants)
    bad = {t: law for t, law in laws.items() if law.misfit}
    if bad and not args.force:
        print("codemix law propose: refused: the " + args.form + " law does not fit "
              + "; ".join(f"{t} ({law.fit_summary()})" for t, law in bad.items())
              + ". Try another --form (codemix law fit prints every form's fit), add mixtures, or pass --force "
              "to propose from it anyway.")
        return 1
    for t, law in bad.items():
        print(f"warning: proposing from a law that does not fit {t} (--force): {law.fit_summary()}")
    opt = mo.optimum(laws, obj, dict(args.bound))
    out = Path(args.output)
    gin_path, side = le.write_proposal(out, opt.as_dict(), laws, str(obj), str(data.root), "optimum", opt)
    print(f"wrote {gin_path} (and {side.name}): optimum of '{obj}' at "
          + ", ".join(f"{f} {s:.3f}" for f, s in opt.as_dict().items() if s > 0))
    cols = le.share_columns(runs)
    picks = mo.explore(laws, obj, args.explore, avoid=[*runs[cols].to_numpy(float), opt.shares],
                       bounds=dict(args.bound)) if args.explore else []
    for i, s in enumerate(picks):
        p, _ = le.write_proposal(out.with_name(f"{out.stem}_explore{i + 1}.gin"), dict(zip(cols, s)), laws,
                                 str(obj), str(data.root), "explore")
        print(f"wrote {p}: exploratory, " + ", ".join(f"{f} {v:.3f}" for f, v in zip(cols, s) if v > 0))
    if args.explore and len(picks) < args.explore:
        print(f"only {len(picks)} exploratory mixtures are 0.1 apart from the runs and each other")
    return 0


def run(args: argparse.Namespace) -> int:
    from codemix.analysis.load import load_experiment

    data = load_experiment(args.experiment_dir)
    return _fit(args, data) if args.law_command == "fit" else _propose(args, data)
