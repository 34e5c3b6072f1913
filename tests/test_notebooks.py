"""The walkthrough notebooks execute top to bottom without errors."""

from __future__ import annotations

import pytest

from tests.notebook_run import run_notebook

FAST = ["01_data_and_features.ipynb"]


@pytest.mark.parametrize("name", FAST)
def test_notebook_runs(name: str) -> None:
    run_notebook(name, timeout=600)
