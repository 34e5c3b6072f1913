"""The fingerprint-ridge reference model: hand-checked features and the ridge against its closed form."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.errors import QmlrpError
from qmlrp.training.baselines import ELEMENTS, _solve, fingerprint_matrix, fit_ridge, reference_maes


def test_element_counts_and_fingerprint_totals_by_hand():
    # methanol CH3OH: 4 H, 1 C, 1 O; acetonitrile CH3CN: 3 H, 2 C, 1 N; fluoromethane: 3 H, 1 C, 1 F
    x = fingerprint_matrix(["CO", "CC#N", "CF"], radius=0, n_bits=64)
    assert x.shape == (3, 64 + len(ELEMENTS))
    assert x[:, 64:].tolist() == [[4, 1, 0, 1, 0], [3, 2, 1, 0, 0], [3, 1, 0, 0, 1]]
    # radius 0: one environment per atom (hydrogens explicit), so the counts sum to the atom count
    assert x[:, :64].sum(axis=1).tolist() == [6, 6, 5]
    # methanol's four H: three on C and one on O are the same radius-0 environment (a bare H)
    assert x[0, :64].max() == 4


def test_an_unparsable_smiles_is_named():
    with pytest.raises(QmlrpError, match=r"SMILES 'C1CC' \(row 1\) does not parse"):
        fingerprint_matrix(["C", "C1CC"])


def test_dual_and_primal_ridge_agree():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 12))
    y = rng.normal(size=7)
    dual = _solve(a, y, 0.3)                                     # n < d: dual form
    primal = np.linalg.solve(a.T @ a + 0.3 * np.eye(12), a.T @ y)  # explicit (AᵀA + λI)⁻¹ Aᵀy
    np.testing.assert_allclose(dual, primal, rtol=1e-10, atol=1e-12)


def test_ridge_recovers_a_linear_law_and_picks_the_small_penalty():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, -2.0, 5.0]
    y = x @ np.array([1.5, -2.0, 0.5, 0.25]) + 7.0
    train, validation, test = np.arange(40), np.arange(40, 50), np.arange(50, 60)
    fit = fit_ridge(x, y, train, validation, penalties=(1e-8, 1.0, 100.0))
    assert fit.penalty == 1e-8
    np.testing.assert_allclose(fit.predict(x[test]), y[test], rtol=1e-6, atol=1e-6)


def test_ridge_on_noise_chooses_a_large_penalty_and_predicts_near_the_mean():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 30))
    y = rng.normal(size=80)  # no relation to x
    fit = fit_ridge(x, y, np.arange(60), np.arange(60, 80))
    assert fit.penalty >= 1e3
    pred = fit.predict(x[60:])
    assert np.max(np.abs(pred - y[:60].mean())) < 0.2


def test_ridge_needs_training_and_validation_rows():
    with pytest.raises(QmlrpError, match="needs ≥ 2 training and ≥ 1 validation rows"):
        fit_ridge(np.zeros((3, 2)), np.zeros(3), np.arange(1), np.arange(1, 3))


def test_reference_maes_on_an_exact_linear_law_by_hand():
    # y = 2x + 1 on x = 0..9, trained on x = 0..5. The smallest penalty λ = 0.1 wins; on the standardised
    # column (Σa² = 6) ridge shrinks the slope by 6 / 6.1, so a test molecule at distance d from the training
    # mean x̄ = 2.5 is missed by 2 d · 0.1 / 6.1: d = 5.5 and 6.5 give a mean error of 2 · 6 · 0.1 / 6.1.
    x = np.arange(10, dtype=float)[:, None]
    y = 2.0 * x[:, 0] + 1.0
    train, validation, test = np.arange(6), np.array([6, 7]), np.array([8, 9])
    maes = reference_maes(x, y, train, validation, test)
    assert maes["ridge_penalty"] == pytest.approx(0.1)
    assert maes["ridge_mae"] == pytest.approx(2 * 6 * 0.1 / 6.1, rel=1e-9)
    # training mean of y[0:6] = 2 * 2.5 + 1 = 6; test labels 17 and 19: |6 - 17|, |6 - 19| -> mean 12
    assert maes["mean_mae"] == 12.0
