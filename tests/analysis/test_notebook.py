"""notebooks/analysis.ipynb: stored without outputs, and runs headless end to end."""
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "analysis.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.outputs == [], f"cell {cell.id} has stored outputs; clear them before committing"
        assert cell.execution_count is None, f"cell {cell.id} has an execution count"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.slow
def test_notebook_executes_against_a_real_experiment(real_experiment, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("CODEMIX_EXPERIMENT_DIR", str(real_experiment))
    monkeypatch.setenv("CODEMIX_BASELINE", "text_only")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    texts, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
            texts.append(out.get("text", ""))
            data = out.get("data", {})
            texts.append(data.get("text/plain", "") + data.get("text/markdown", ""))
            images += "image/png" in data
    text = "\n".join(texts)
    assert "experiment 'micro_eval': 2 variants, 3 runs" in text
    assert "staged+cooldown" in text and "reasoning" in text
    assert "code-share sweep**: nothing to plot" in text
    assert images == 3  # loss curves, category bars, cooldown effect
    assert "later stage(s) with both numbers" in text or "correlation over" in text
    # the working-tree notebook is untouched by the run
    test_notebook_is_stored_without_outputs()
