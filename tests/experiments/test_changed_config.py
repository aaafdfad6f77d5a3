"""`codemix experiment run` on a workdir whose runs were trained under another
configuration: refused before anything is written, or reused with the change
recorded when the user says so."""
import hashlib
import json
import subprocess
import sys

import pytest

from tests.train.helpers import REPO, env

MICRO = "tests/experiments/micro.gin"
INIT = "init-local_text-2.048K"


def _experiment(root, *args):
    cmd = [sys.executable, "-m", "codemix.main", "--log_level", "WARNING", "experiment", "run", MICRO,
           "--workdir", str(root), "--only", "solo", *args]
    return subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, timeout=600, check=False)


def _digests(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow  # trains a 4-step run, then two reruns, in subprocesses
def test_rerun_with_another_model_or_lr_is_refused_then_reused_when_allowed(tmp_path):
    root = tmp_path / "exp"
    first = _experiment(root)
    assert first.returncode == 0, first.stderr[-3000:]
    before = _digests(root)

    changed = _experiment(root, "--run_param", "LR = 0.15",
                          "--gin_param", "Experiment.model_gin = 'gin/models/small.gin'")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr, changed.stderr[-3000:]
    err = changed.stderr
    assert f"1 run(s) of {root} were trained with another configuration" in err
    assert f"- {INIT} (trained to step 4):" in err
    assert "make_schedule.peak: 0.003 when trained, 0.15 now" in err
    assert "ModelConfig.norm_eps" not in err  # only what differs
    assert "new --workdir" in err and "--allow_config_change" in err
    assert _digests(root) == before  # not plan.json, not the report, not the run

    allowed = _experiment(root, "--run_param", "LR = 0.15", "--allow_config_change")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    lineage = json.loads((root / "runs" / INIT / "lineage.json").read_text())
    assert lineage["status"] == "finished"
    [change] = lineage["config_changes"]
    assert change["changes"]["make_schedule.peak"] == {"before": "0.003", "after": "0.15"}
    assert (root / "runs" / INIT / "metrics.jsonl").read_bytes() == (
        (tmp_path / "exp" / "runs" / INIT / "metrics.jsonl").read_bytes())
    assert _experiment(root, "--run_param", "LR = 0.15").returncode == 0  # the change is the run's config now
