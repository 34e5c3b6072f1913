"""Notebook 2 (explanations) executes top to bottom on its 300-molecule sample, and shows what it claims."""

from __future__ import annotations

import pytest

from tests.notebook_run import run_notebook


pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

def test_notebook_02_runs() -> None:
    outputs, _ = run_notebook("02_explanations.ipynb")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the two molecule figures and the full study's type profiles (its record is committed)
    text = "".join(o.get("text", "") for o in outputs)
    assert "True True" in text  # the functional 2y is explained as twice the explanation of y
    tables = "".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    # section 6 reads the committed full-QM9 record: verdicts over the folds, faithfulness, Crippen tau
    assert "full QM9: holds in folds" in tables and "of 10" in tables
    assert "gradient_x_input" in tables and "all of QM9: mean τ" in tables
