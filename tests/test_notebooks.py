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
    run_notebook(name, timeout=600)


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
