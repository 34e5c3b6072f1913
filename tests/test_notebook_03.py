"""Notebook 3 (frequencies and beta) executes top to bottom on its small sample and shows what it claims."""

from __future__ import annotations

import pytest

import re

from tests.notebook_run import run_notebook


pytestmark = pytest.mark.integration  # starts processes (tests/conftest.py: deselected by default, run in CI)

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
    # the beta model beside its references on the same split, and the references on the control target (QM9's α of
    # the same molecules): columns ridge, kernel ridge, mean (MAE/MAD). The kernel ridge learns α from ~500
    # molecules (well under half the MAD); the mean predicts α no better than the mean.
    assert re.search(r"ridge / MAD\s+krr / MAD\s+mean / MAD\s+GC / MAD", text)
    assert re.search(r"beta_parallel\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+", text)
    control = re.search(r"control: QM9 alpha\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+NaN", text)
    assert control and float(control.group(2)) < 0.5 and 0.7 <= float(control.group(3)) <= 1.3
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # per-mode MAE, stick spectra, beta histogram, type profiles, full-QM9 per-mode MAE
    # the last section reads the committed full-QM9 record beside the small default's
    assert re.search(r"MAE, all real modes \(cm\^-1\)\s+[0-9.]+\s+[0-9.]+", text)
    assert "omega1 ~ zpve vs alpha" in text and "share of folds with Δ > 0" in text
    # the equivariant head: a rotated and translated molecule gives rotated vectors and the same beta_par
    turned = re.search(r"rotation of the vectors, max \|difference\| / max \|vector\|: ([0-9.e+-]+)", text)
    assert turned and float(turned.group(1)) <= 1e-5
    same = re.search(r"beta_par before and after, max \|difference\|: ([0-9.e+-]+) a\.u\.", text)
    assert same and float(same.group(1)) <= 1e-3
    # the committed 10-fold record of the equivariant models, and its explanation against alpha and ZPVE
    import json

    from tests.notebook_run import REPO

    record = json.loads((REPO / "studies" / "qm9-2k" / "metrics" / "beta_vector.json").read_text())
    assert f"passes: {record.get('passes_bar')}" in text
    gc = record["equivariant_gc"]["beta_parallel_mae_over_mad_fold_mean"]
    assert re.search(rf"equivariant GC\s+{round(gc, 3):.3f}".rstrip("0"), text)
    assert re.search(r"spearman: with alpha [0-9.]+, with ZPVE [0-9.]+, delta [+-][0-9.]+", text)
    assert len(images) >= 7  # + the per-fold beta_par bars and the type profiles of beta_par, alpha, ZPVE
