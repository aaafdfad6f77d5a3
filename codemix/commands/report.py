"""`codemix report DIR`: write DIR/report.md (tables) and DIR/report/*.png (plots).

    codemix report /tmp/demo --baseline text_only
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment_dir", metavar="DIR", help="workdir of `codemix experiment run`")
    parser.add_argument("--baseline", default="text_only",
                        help="variant the relative changes are measured against (default text_only)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the intervals")


def run(args: argparse.Namespace) -> int:
    from codemix.analysis.load import load_experiment
    from codemix.analysis.report import write_report

    path = write_report(args.experiment_dir, baseline=args.baseline, resamples=args.resamples)
    data = load_experiment(args.experiment_dir)
    print(f"wrote {path}")
    if data.missing:
        print(f"{len(data.missing)} run(s) missing or incomplete (listed in the report):")
        for m in data.missing:
            print(f"  {m['run']}: {m['problem']}")
    return 0
