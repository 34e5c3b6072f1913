"""Notebook 2 (explanations) executes top to bottom on its 300-molecule sample, and shows what it claims."""

from __future__ import annotations

import pytest

from tests.notebook_run import run_notebook


pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

def test_notebook_02_runs() -> None:
    outputs, _ = run_notebook("02_explanations.ipynb")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the two molecule figures
    text = "".join(o.get("text", "") for o in outputs)
    assert "True True" in text  # the functional 2y is explained as twice the explanation of y
