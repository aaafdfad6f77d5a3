"""`codemix report DIR`: report.md with tables, valid PNG plots, missing runs named."""
import argparse
import json
import re
import shutil

import matplotlib.image
import pytest

from codemix.analysis.report import write_report
from codemix.commands import report as cli
from codemix.main import COMMANDS
from tests.analysis.markdown import unpadded
from tests.analysis.synthetic import write_study, write_synthetic

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _images(report_path):
    with open(report_path) as f:
        text = unpadded(f.read())
    return text, re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def _assert_valid_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


SECTIONS = ["## Findings", "### Held-out bits per byte against the baseline", "## Table 2", "## Signal and noise",
            "## Category scores with 95% intervals", "## Relative change against", "## Held-out bits per byte per",
            "## Missing", "## Runs", "## Realized mixture shares", "## Plots"]


def test_report_of_synthetic_experiment_has_every_plot(tmp_path):
    root = write_synthetic(tmp_path / "exp")
    path = write_report(str(root), resamples=500)
    text, images = _images(path)
    assert images == [f"report/{n}.png" for n in
                      ("loss_curves", "heldout_curves", "category_bars", "sweep_curve", "heldout_sweep",
                       "cooldown_effect")]
    for rel in images:
        _assert_valid_png(root / rel)
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    positions = [text.index(s) for s in SECTIONS]
    assert positions == sorted(positions), "sections out of order"
    assert heads[0] == "## Findings"
    # code_p50: +10% reasoning on 11 of 200 paired examples, an interval around it
    row = next(line for line in text.splitlines() if line.startswith("| code_p50 | reasoning | +10.0 | ["))
    lo, hi = (float(x) for x in row.split("[")[1].split("]")[0].split(","))
    assert 0 < lo < 10 < hi
    assert "| 100% code costs 18.3% reasoning and 86% knowledge | reasoning | -18.3% | `code_p100` vs `code_p0` |" \
        in text
    assert "QuAC and StoryCloze are not available offline" in text
    assert "**One seed:** 2 of the measured rows" in text  # code_p100 vs code_p0, one seed each
    assert "Nothing is missing" in text


def test_report_names_missing_baseline_and_runs(tmp_path):
    root = write_synthetic(tmp_path / "exp")
    shutil.rmtree(root / "runs" / "init-text_only-1K")
    shutil.rmtree(root / "runs" / "init-text_only-1K-seed1")
    (root / "runs" / "init-code_p0-1K" / "eval.json").unlink()
    path = write_report(str(root), resamples=200)
    text, images = _images(path)
    assert "`init-text_only-1K` (text_only): not started" in text
    assert "`init-code_p0-1K` (code_p0): no eval.json" in text
    assert "baseline variant 'text_only' has no evaluated final run (missing)" in text
    # Table 2: every cell of the unevaluated baseline reads "missing"
    assert "| text_only | 0 | init | missing | missing | missing | missing | missing | missing |" in text
    assert "| code→text vs text-only: NL reasoning +8.8% | reasoning | +8.8% |" in text
    for rel in images:
        _assert_valid_png(root / rel)


def test_report_on_runs_lacking_the_metrics_a_finding_needs(tmp_path):
    root = write_study(tmp_path / "exp", per_example=False, seeds=1, n_examples=20)
    text, _ = _images(write_report(str(root), resamples=100))
    assert "could not be built" not in text
    findings_part = text[text.index("## Findings"):text.index("### Held-out")]
    rows = [line for line in findings_part.splitlines() if line.startswith("| ") and "claim" not in line]
    assert len(rows) == 10
    assert all("| missing | missing (no per-example values) |" in r for r in rows), rows
    assert "missing (no per-example values)" in text[text.index("## Category scores"):]


@pytest.mark.slow  # trains and evaluates a real micro experiment (module fixture)
def test_report_of_real_experiment(real_experiment):
    assert COMMANDS["report"][0] == "codemix.commands.report"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(real_experiment), "--baseline", "text_only", "--resamples", "300"])
    assert cli.run(args) == 0
    path = real_experiment / "report.md"
    text, images = _images(path)
    assert "# Experiment report: micro_eval" in text
    assert "Nothing is missing" in text
    assert "| staged+cooldown | reasoning |" in text  # relative change row
    required = {"report/loss_curves.png", "report/category_bars.png", "report/cooldown_effect.png"}
    # no code_p<N> sweep here; held-out curves when the runs evaluated held-out sets
    assert required <= set(images) <= required | {"report/heldout_curves.png"}
    assert text.index("## Findings") < text.index("## Table 2")
    assert "Not drawn: no evaluated code_p<N> variants" in text
    for rel in images:
        _assert_valid_png(real_experiment / rel)
    # which corpus each run trained on: the fingerprint and declared sources its run_info recorded
    info = json.loads((real_experiment / "runs" / "init-local_text-2.048K" / "run_info.json").read_text())
    prov = info["corpora"]["markup"]  # a held-out family: the byte-level local_text itself reads no corpus
    corpora_section = text[text.index("## Corpora"):text.index("## Time per phase")]
    assert prov["fingerprint"] and prov["fingerprint"] in corpora_section
    ev = json.loads((real_experiment / "runs" / "init-local_text-2.048K" / "eval.json").read_text())
    assert {r["benchmark"] for r in ev["records"]} >= {"copa", "arc_easy", "category:reasoning"}


def test_report_of_a_directory_that_is_not_an_experiment(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiment workdir"):
        write_report(str(tmp_path))
