"""The walkthrough notebooks execute top to bottom without errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.notebook_run import REPO, run_notebook

FAST = ["01_data_and_features.ipynb"]


@pytest.mark.integration
@pytest.mark.parametrize("name", FAST)
def test_notebook_runs(name: str) -> None:
    outputs, text = run_notebook(name, timeout=600)
    if name == "01_data_and_features.ipynb":  # its last section reads the full study's committed record
        study = REPO / "studies" / "qm9-full" / "metrics"
        record = json.loads((study / "evaluate.json").read_text())
        assert f"{record['alpha']['mae_mean']:.4g} ± {record['alpha']['mae_sd']:.2g} bohr^3" in text
        assert f"{record['zpve']['mae_mean']:.4g} ± {record['zpve']['mae_sd']:.2g} eV" in text
        if (study / "evaluate_long.json").exists():
            long = json.loads((study / "evaluate_long.json").read_text())["alpha"]
            n = long["n_folds"]
            assert f"{n} of 10" in text and (n == 10 or f"partial: " in text)
        curve = json.loads((study / "epochs_curve.json").read_text())
        assert f"epochs for the bar: {curve['epochs_for_bar']}" in text
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3


COMMITTED = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_notebook_is_executed_with_figures(name: str) -> None:
    """A reader of the repository sees results: every code cell of a committed notebook has been run
    (``python notebooks/execute.py``), none holds an error, and there is at least one figure."""
    cells = [c for c in json.loads((REPO / "notebooks" / name).read_text())["cells"] if c["cell_type"] == "code"]
    assert cells, f"{name}: no code cells"
    unrun = [i for i, c in enumerate(cells) if c.get("execution_count") is None]
    assert not unrun, f"{name}: code cells {unrun} have not been executed (python notebooks/execute.py {name})"
    outputs = [o for c in cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], f"{name}: committed with an error"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name}: no figure"
