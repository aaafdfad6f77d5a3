"""`codemix report` on runs whose files are damaged: one line per problem, naming
the file, what was skipped and the fix; no traceback, no silently blank section."""
import json
import subprocess
import sys

import pytest

from tests.analysis.synthetic import write_synthetic
from tests.train.helpers import REPO, env

RUNS = ["init-balanced-1K", "init-code_p0-1K", "init-code_p100-1K", "init-code_p50-1K", "init-text_only-1K",
        "init-text_only-1K-seed1"]


def _report(root):
    proc = subprocess.run([sys.executable, "-m", "codemix.main", "--log_level", "ERROR", "report", str(root),
                           "--resamples", "50"], check=False, cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=300)
    return proc


@pytest.mark.slow  # the report command in a subprocess (~10 s)
def test_report_names_every_damaged_file_and_what_it_skipped(tmp_path):
    root = write_synthetic(tmp_path / "exp")
    runs = {name: root / "runs" / name for name in RUNS}
    torn, listed, stringy, info_list, info_null, sources5 = (runs[n] for n in RUNS)
    m = torn / "metrics.jsonl"
    text = m.read_text()
    m.write_text(text[: len(text) - 40])  # the last line (step 4) cut mid-write, no newline
    with open(listed / "metrics.jsonl", "a") as f:
        f.write("[1, 2]\n")
    lines = (stringy / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    rec["step"] = "2"
    lines[1] = json.dumps(rec)
    (stringy / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (info_list / "run_info.json").write_text("[]")
    (info_null / "run_info.json").write_text("null")
    info = json.loads((sources5 / "run_info.json").read_text())
    (sources5 / "run_info.json").write_text(json.dumps({**info, "sources": 5}))

    proc = _report(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "load.py" not in proc.stderr and "run_files.py" not in proc.stderr  # no traceback through loading
    out = proc.stdout
    report = (root / "report.md").read_text()
    expected = {
        torn: f"{torn / 'metrics.jsonl'}: line 4 is cut short",
        listed: f"{listed / 'metrics.jsonl'}: line 5 is a JSON list, not a JSON object and was skipped",
        stringy: f"{stringy / 'metrics.jsonl'}: line 2 has step a string ('2'), not a whole number and was skipped",
        info_list: f"{info_list / 'run_info.json'} holds a JSON list, not a JSON object: ignored",
        info_null: f"{info_null / 'run_info.json'} holds null, not a JSON object: ignored",
        sources5: f"{sources5 / 'run_info.json'}: sources is a number (5), not a list of source names",
    }
    for run, message in expected.items():
        assert message in out, (message, out)
        line = next(x for x in report.splitlines() if message in x)
        assert line.startswith(f"- `{run.name}`")
        assert "rerun" in line or "delete" in line.lower()  # and the fix
    torn_line = next(x for x in out.splitlines() if "is cut short" in x)
    assert "the last step shown is 3 (the run's lineage says it reached step 4)" in torn_line
    for section in ("## Runs", "## Realized mixture shares", "## Missing"):  # built, not blanked
        body = report[report.index(section):].split("\n## ", 1)[0]
        assert "could not be built" not in body, body


def test_plan_that_is_not_a_list_of_runs_is_one_message(tmp_path):
    root = write_synthetic(tmp_path / "exp")
    (root / "plan.json").write_text(json.dumps({"runs": 5}))
    proc = _report(root)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{root / 'plan.json'} must be a list of runs" in proc.stderr
    assert "rerun `codemix experiment run`" in proc.stderr
