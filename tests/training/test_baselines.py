"""The reference models: hand-checked features, the ridges against their closed forms, known answers."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.errors import QmlrpError
from qmlrp.training.baselines import (
    BOHR_PER_ANGSTROM, ELEMENTS, _solve, coulomb_eigenvalues, fingerprint_matrix, fit_kernel_ridge, fit_ridge,
    reference_inputs, reference_maes)


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


def test_coulomb_eigenvalues_of_h2_and_water_by_hand():
    # H2 at 0.74 Å: M = [[0.5, 1/r], [1/r, 0.5]] (r in bohr), eigenvalues 0.5 ± 1/r
    r = 0.74 * BOHR_PER_ANGSTROM
    h2 = coulomb_eigenvalues([np.array([1, 1])], [np.array([0, 0, 0, 0, 0, 0.74])], size=4)
    np.testing.assert_allclose(h2, [[0.5 + 1 / r, 0.5 - 1 / r, 0.0, 0.0]], rtol=1e-12)
    # water, flat coordinates: the eigenvalues of the explicit 3 × 3 matrix, sorted high to low
    xyz = np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]])
    z = np.array([8.0, 1.0, 1.0])
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) * BOHR_PER_ANGSTROM
    m = np.array([[0.5 * 8**2.4, 8 / d[0, 1], 8 / d[0, 2]], [8 / d[1, 0], 0.5, 1 / d[1, 2]], [8 / d[2, 0], 1 / d[2, 1], 0.5]])
    water = coulomb_eigenvalues([z], [xyz.reshape(-1)], size=29)
    np.testing.assert_allclose(water[0, :3], np.sort(np.linalg.eigvalsh(m))[::-1], rtol=1e-12)
    assert water.shape == (1, 29) and not water[0, 3:].any()
    # rotation and atom order do not matter
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(coulomb_eigenvalues([z[::-1]], [(xyz @ turn.T)[::-1]]), water, rtol=1e-12)


@pytest.mark.parametrize(("numbers", "xyz", "message"), [
    ([1, 1], [0, 0, 0, 0, 0], r"row 0 has 2 atoms and 5 coordinates"),
    ([1, 1], [0, 0, 0, 0, 0, 0], r"row 0 has two atoms at one position"),
    ([1] * 30, [float(i) for i in range(90)], r"row 0 has 30 atoms and 90 coordinates \(at most 29 atoms"),
])
def test_bad_geometries_are_named(numbers, xyz, message):
    with pytest.raises(QmlrpError, match=message):
        coulomb_eigenvalues([np.array(numbers)], [np.array(xyz, float)])


def test_kernel_ridge_learns_a_smooth_law_and_its_solution_is_the_closed_form():
    x = np.linspace(0.0, 3.0, 61)[:, None]
    y = np.sin(2.0 * x[:, 0]) + 4.0
    train, validation, test = np.arange(0, 61, 2), np.arange(1, 61, 4), np.arange(3, 61, 4)
    fit = fit_kernel_ridge(x, y, train, validation)
    assert np.max(np.abs(fit.predict(x[test]) - y[test])) < 0.05
    # the coefficients are (K + λI)⁻¹ (y − ȳ) with K the Laplacian kernel of the standardised training rows
    a = (x[train] - x[train].mean(0)) / x[train].std(0)
    kernel = np.exp(-np.abs(a - a.T) / fit.width)
    expected = np.linalg.solve(kernel + fit.penalty * np.eye(train.size), y[train] - y[train].mean())
    np.testing.assert_allclose(fit.coefficients, expected, rtol=1e-8, atol=1e-10)


def test_kernel_ridge_on_noise_predicts_near_the_mean():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 5))
    y = rng.normal(size=80)
    fit = fit_kernel_ridge(x, y, np.arange(60), np.arange(60, 80))
    assert np.mean(np.abs(fit.predict(x[60:]) - y[:60].mean())) < 0.5 * np.mean(np.abs(y[60:] - y[:60].mean()))


def test_reference_maes_on_an_exact_linear_law_by_hand():
    # y = 2x + 1 on x = 0..9, trained on x = 0..5. The smallest penalty λ = 0.1 wins; on the standardised
    # column (Σa² = 6) ridge shrinks the slope by 6 / 6.1, so a test molecule at distance d from the training
    # mean x̄ = 2.5 is missed by 2 d · 0.1 / 6.1: d = 5.5 and 6.5 give a mean error of 2 · 6 · 0.1 / 6.1.
    x = np.arange(10, dtype=float)[:, None]
    y = 2.0 * x[:, 0] + 1.0
    train, validation, test = np.arange(6), np.array([6, 7]), np.array([8, 9])
    maes = reference_maes(x, x, y, train, validation, test)
    assert maes["ridge_penalty"] == pytest.approx(0.1)
    assert maes["ridge_mae"] == pytest.approx(2 * 6 * 0.1 / 6.1, rel=1e-9)
    # training mean of y[0:6] = 2 * 2.5 + 1 = 6; test labels 17 and 19: |6 - 17|, |6 - 19| -> mean 12
    assert maes["mean_mae"] == 12.0
    # the kernel ridge's answer is fit_kernel_ridge's on the same rows
    kernel = fit_kernel_ridge(x, y, train, validation)
    assert maes["krr_mae"] == pytest.approx(np.mean(np.abs(kernel.predict(x[test]) - y[test])))
    assert maes["krr_penalty"] == kernel.penalty


def test_reference_inputs_follow_the_ids_and_name_a_missing_smiles(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"id": [7, 3], "smiles": ["O", None],
                          "atomic_numbers": [[8, 1, 1], [1, 1]],
                          "coordinates": [[0.0, 0.0, 0.117, 0.0, 0.757, -0.469, 0.0, -0.757, -0.469], [0, 0, 0, 0, 0, 0.74]]})
    frame.to_parquet(tmp_path / "t.parquet")
    fingerprints, coulomb = reference_inputs(tmp_path / "t.parquet", [7])
    assert fingerprints[0, -5:].tolist() == [2, 0, 0, 1, 0] and coulomb.shape == (1, 29) and coulomb[0, 2] != 0
    with pytest.raises(QmlrpError, match=r"t.parquet: no SMILES for featurized molecule id 3"):
        reference_inputs(tmp_path / "t.parquet", [7, 3])
