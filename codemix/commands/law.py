"""`codemix law`: fit mixture laws to an experiment's runs, propose the next mixtures.

    codemix law fit runs/demo --target val/text/bpb --target val/code_web/bpb
    codemix law propose runs/demo --objective "min val/text/bpb; val/code_web/bpb <= 2.5" \\
        --output gin/mixtures/law_opt.gin --explore 2
    codemix law fit runs/ladder --target val/text/bpb --target val/code_web/bpb --target_scale 470M,200B

With --target_scale N,D (a ladder: runs at several model sizes and budgets) both
commands fit the laws across scale of codemix/analysis/scale_law.py to every
finished from-scratch run and take the optimum at N parameters and D tokens;
without it, the single-scale mixture law as before.

Target and objective syntax: codemix/analysis/law_experiment.py and
codemix/analysis/mixture_optimum.py. `propose` writes the optimum to --output
and the K exploratory mixtures next to it as <name>_explore<i>.gin, each with
a <name>.law.json prediction that `codemix report` checks once it is trained.
"""
from __future__ import annotations

import argparse
import json
import math

from etils import epath


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
        s.add_argument("--form", default=None, choices=("exp", "linear", "loglinear", "additive", "joint"),
                       help="law form (default exp, Ye et al. 2024); LOO of every form is printed by fit")
        s.add_argument("--variants", nargs="+", default=None,
                       help="fit only these variants' runs (default: every from-scratch run at one budget)")
        s.add_argument("--resamples", type=int, default=500, help="bootstrap laws (default 500)")
        s.add_argument("--bound", type=_bound, action="append", default=[], metavar="FAMILY=LO:HI",
                       help="share bounds of the optimum search (default: the range the runs cover)")
        s.add_argument("--target_scale", default=None, metavar="N,D",
                       help="a ladder's laws across scale and the optimum at N parameters x D tokens, e.g. "
                            "470M,200B (--form then is additive or joint; default joint)")
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
    out = epath.Path(args.output)  # a gs:// experiment folder too
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


def _scale_objective(args, targets):
    from codemix.analysis import law_experiment as le
    from codemix.analysis import mixture_optimum as mo

    if not args.objective:
        return {t: 1.0 for t in targets}, {t: le.default_sense(t) for t in targets}, " + ".join(targets)
    obj = mo.Objective.parse(args.objective)
    if obj.constraints:
        raise le.ml.LawError(f"objective {args.objective!r}: --target_scale takes an objective without "
                             f"constraints, e.g. 'min val/text/bpb + 0.5*val/code_web/bpb'.")
    return dict(obj.terms), {t: obj.sense for t in obj.terms}, str(obj)


def _scale(args, data) -> int:
    from codemix.analysis import ladder_analysis as la
    from codemix.analysis import scale_law as sl

    n, d = sl.parse_scale(args.target_scale)
    form = args.form or "joint"
    if form not in sl.FORMS:
        raise sl.LawError(f"--form {form} is a single-scale form; with --target_scale use one of {sl.FORMS}.")
    targets = list(dict.fromkeys(getattr(args, "target", None) or []))
    weights, senses, label = _scale_objective(args, targets)
    targets = list(dict.fromkeys([*targets, *weights]))
    laws, runs = la.fit_scale(data, targets, form, args.resamples)
    other = [f for f in sl.FORMS if f != form]
    other_laws = {}
    for f in other:
        try:
            other_laws[f] = la.fit_scale(data, targets, f, 0)[0]
        except sl.LawError as e:
            other_laws[f] = str(e)
    bounds = dict(args.bound)
    if bounds:
        for law in laws.values():
            object.__setattr__(law, "share_range", {**law.share_range, **bounds})
    opt = sl.optimum(laws, n, d, weights, senses)
    f = la.finished(runs)
    out = {"experiment": data.name, "form": form, "target_scale": [n, d], "runs": len(f),
           "sizes": sorted(map(float, f["N"].unique())), "families": list(opt.families), "objective": label,
           "optimum": {"shares": opt.shares, "low": opt.low, "high": opt.high, "value": opt.value},
           "targets": {}}
    for t, law in laws.items():
        lo, hi = law.interval(n, d, [list(opt.shares.values())])
        out["targets"][t] = {"params": law.param_intervals(), "rmse": law.rmse, "loo_rung": law.loo,
                             "top_error": law.top_error, "bootstrap": law.bootstrap,
                             "loo_other": {f: (v[t].loo if isinstance(v, dict) else v) for f, v in other_laws.items()},
                             "predicted_at_optimum": [float(law.predict(n, d, [list(opt.shares.values())])[0]),
                                                      float(lo[0]), float(hi[0])]}
    if args.law_command == "propose":
        gin_path, side = la.write_scale_proposal(args.output, opt, laws, label, str(data.root))
        print(f"wrote {gin_path} (and {side.name}): optimum of '{label}' at N = {n:.3g}, D = {d:.3g}: "
              + ", ".join(f"{k} {v:.3f}" for k, v in opt.shares.items() if v > 0))
        return 0
    if getattr(args, "json", False):
        print(json.dumps(out, indent=2, default=float))
        return 0
    print(f"{data.name}: {len(f)} finished runs at sizes {[f'{s:.3g}' for s in out['sizes']]}; {form} law "
          f"(Shukor et al. 2025), {args.resamples} bootstrap laws; 95% intervals")
    if len(out["sizes"]) < 3:
        print("  (leave-one-size-out errors need three sizes: with two, neither form can be checked on a size it "
              "did not see)")
    for t, r in out["targets"].items():
        print(f"\n{t}: RMSE {_fmt(r['rmse'])}, leave-one-size-out RMSE {_fmt(r['loo_rung'])} (other forms: "
              + ", ".join(f"{f} {_fmt(v) if isinstance(v, float) else v}" for f, v in r["loo_other"].items())
              + f"), error at the top size left out {_fmt(r['top_error'])}; bootstrap over {r['bootstrap']}")
        for name, (v, lo, hi) in r["params"].items():
            print(f"  {name:<16} {_fmt(v):>10}  [{_fmt(lo)}, {_fmt(hi)}]")
        v, lo, hi = r["predicted_at_optimum"]
        print(f"  predicted at the optimum: {_fmt(v)} [{_fmt(lo)}, {_fmt(hi)}]")
    o = out["optimum"]
    print(f"\noptimum of '{label}' at N = {n:.3g}, D = {d:.3g}: "
          + ", ".join(f"{k} {v:.3f} [{o['low'][k]:.3f}, {o['high'][k]:.3f}]" for k, v in o["shares"].items()))
    return 0


def run(args: argparse.Namespace) -> int:
    from codemix.analysis.load import load_experiment

    data = load_experiment(args.experiment_dir)
    if args.target_scale:
        return _scale(args, data)
    if args.form is None:
        args.form = "exp"
    elif args.form in ("additive", "joint"):
        from codemix.errors import LawError

        raise LawError(f"--form {args.form} is a law across scale; give --target_scale N,D with it.")
    return _fit(args, data) if args.law_command == "fit" else _propose(args, data)
