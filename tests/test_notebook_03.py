"""Notebook 3 (frequencies and beta) executes top to bottom on its small sample and shows what it claims."""

from __future__ import annotations

import re

from tests.notebook_run import run_notebook


def test_notebook_03_runs() -> None:
    outputs, text = run_notebook("03_frequencies_and_beta.ipynb")
    # every listed mode count is 3N-6, or 3N-5 for linear molecules
    match = re.search(r"3N-5 when linear\): (\d+) of (\d+)", text)
    assert match and match.group(1) == match.group(2)
    assert "target array: (300, 81)" in text and "descending: True" in text
    assert "joint model output: (" in text and ", 81)" in text
    for view in ("omega1", "mode_sum"):  # conservation of both views, float32 with the default composite
        error = re.search(rf"{view} max relative conservation error: ([0-9.e+-]+)", text)
        assert error and float(error.group(1)) <= 1e-4
    # the beta model beside its two references on the same split
    assert re.search(r"fold 0 test MAE/MAD: GC [0-9.]+, fingerprint ridge [0-9.]+ \(penalty [0-9.e+]+\), "
                     r"training mean [0-9.]+", text)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # per-mode MAE, stick spectra, beta histogram, type profiles
