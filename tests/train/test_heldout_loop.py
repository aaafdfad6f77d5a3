"""Held-out loss per family in the train loop, and the same numbers from `codemix eval`."""
import json
import subprocess
import sys

import pytest

from tests.train.helpers import MICRO, REPO, env, metrics, run_train

FAMILIES = ("text", "text_hq", "code_web", "markup", "code_adjacent", "code_synthetic")


@pytest.mark.slow
def test_in_loop_heldout_equals_eval_perplexity(tmp_path):
    work = tmp_path / "run"
    run_train(work, MICRO + ["TRAIN_STEPS=4", "train.eval_every=2"])
    m = metrics(work)
    logged = {r["step"]: r for r in m if "val/text/bpb" in r}
    assert sorted(logged) == [2, 4]  # every eval_every steps and at the end
    for fam in FAMILIES:  # every family, whatever the run's mixture (local_text)
        assert 0 < logged[4][f"val/{fam}/bpb"] < 20 and 0 < logged[4][f"val/{fam}/loss"] < 20
    assert logged[2]["val/text/loss"] != logged[4]["val/text/loss"]
    doc = json.loads((work / "heldout" / "step_4.json").read_text())
    assert doc["families"]["code_web"]["bpb"] == pytest.approx(logged[4]["val/code_web/bpb"])
    assert len(doc["families"]["code_web"]["ids"]) == len(doc["families"]["code_web"]["doc_bpb"])

    out = tmp_path / "ppl.json"
    proc = subprocess.run([sys.executable, "-m", "codemix.main", "--log_level", "WARNING", "eval",
                           "--checkpoint", str(work), "--category", "perplexity", "--batch_size", "8",
                           "--output", str(out)], cwd=REPO, env=env(1), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    got = {(r["benchmark"], r["metric"]): r["value"] for r in res["records"]}
    for fam in FAMILIES:
        for metric in ("loss", "bpb"):
            assert got[(f"heldout:{fam}", metric)] == pytest.approx(logged[4][f"val/{fam}/{metric}"], rel=1e-5)
    ids = res["per_example"]["heldout:text"]["ids"]
    assert ids == doc["families"]["text"]["ids"]
