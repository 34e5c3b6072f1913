"""The 12-type summary on hand-made relevance arrays; normalisation, outliers, hypothesis."""

from __future__ import annotations

import numpy as np

from qmlrp.features.layout import ATOM_FEATURES, PAIR_FEATURES
from qmlrp.relevance.summary import (
    FEATURE_TYPES,
    hypothesis,
    normalise,
    outlier_mask,
    ranking,
    summary_table,
    type_relevance,
    type_totals,
)


def _hand_made():
    """Molecule 0: 3 atoms, 3 pairs; molecule 1: 2 atoms, 1 pair."""
    atoms = np.zeros((5, 21))
    atoms[0, ATOM_FEATURES.index("element_C")] = 3.0
    atoms[1, ATOM_FEATURES.index("element_H")] = -1.0
    atoms[2, ATOM_FEATURES.index("gasteiger_charge")] = 0.6
    atoms[3, ATOM_FEATURES.index("hybridization_sp3")] = 2.0
    atoms[3, ATOM_FEATURES.index("hybridization_sp2")] = -4.0   # signed sum -2, absolute 6
    atoms[4, ATOM_FEATURES.index("aromatic")] = 1.0
    pairs = np.zeros((4, 13))
    pairs[0, PAIR_FEATURES.index("bond_single")] = 0.9
    pairs[1, PAIR_FEATURES.index("distance")] = -0.3
    pairs[2, PAIR_FEATURES.index("graph_distance_le_2")] = 0.6
    pairs[3, PAIR_FEATURES.index("same_ring")] = 2.0
    atom_molecule = np.array([0, 0, 0, 1, 1])
    pair_molecule = np.array([0, 0, 0, 1])
    return atoms, pairs, atom_molecule, pair_molecule


def test_type_relevance_by_hand() -> None:
    atoms, pairs, am, pm = _hand_made()
    signed = type_relevance(atoms, pairs, am, pm, 2)
    absolute = type_relevance(atoms, pairs, am, pm, 2, absolute=True)
    col = {t: k for k, t in enumerate(FEATURE_TYPES)}
    assert signed.shape == (2, 12)
    np.testing.assert_allclose(signed[0, col["atom type"]], (3.0 - 1.0) / 3)     # mean over 3 atoms
    np.testing.assert_allclose(absolute[0, col["atom type"]], (3.0 + 1.0) / 3)
    np.testing.assert_allclose(signed[0, col["partial charge"]], 0.6 / 3)
    np.testing.assert_allclose(signed[1, col["hybridization"]], -2.0 / 2)
    np.testing.assert_allclose(absolute[1, col["hybridization"]], 6.0 / 2)
    np.testing.assert_allclose(signed[1, col["aromaticity"]], 0.5)
    np.testing.assert_allclose(signed[0, col["bond type"]], 0.9 / 3)           # mean over 3 pairs
    np.testing.assert_allclose(signed[0, col["spatial distance"]], -0.1)
    np.testing.assert_allclose(absolute[0, col["spatial distance"]], 0.1)
    np.testing.assert_allclose(signed[0, col["graph distance"]], 0.2)
    np.testing.assert_allclose(signed[1, col["same ring"]], 2.0)
    assert signed[0, col["chirality"]] == 0 and signed[1, col["bond type"]] == 0
    totals = type_totals(atoms, pairs, am, pm, 2)
    np.testing.assert_allclose(totals.sum(1), [atoms[:3].sum() + pairs[:3].sum(), atoms[3:].sum() + pairs[3:].sum()])


def test_one_atom_molecule_has_zero_pair_types() -> None:
    atoms = np.ones((1, 21))
    v = type_relevance(atoms, np.zeros((0, 13)), np.array([0]), np.zeros(0, int), 1)
    assert np.all(np.isfinite(v)) and np.all(v[0, 8:] == 0)


def test_normalise_zero_mean_unit_max() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(3.0, 2.0, (50, 12))
    norm, affine = normalise(raw)
    np.testing.assert_allclose(norm.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.abs(norm).max(), 1.0)
    np.testing.assert_allclose(affine.apply(raw), norm)
    assert ranking(norm.mean(0)) == ranking(raw.mean(0))  # an increasing affine map keeps the order


def test_outliers_and_table() -> None:
    y = np.zeros(10)
    pred = np.array([0.1] * 9 + [5.0])
    assert outlier_mask(y, pred, k_mae=3.0).tolist() == [False] * 9 + [True]
    assert outlier_mask(y, pred, quantile=0.85).sum() == 1
    assert not outlier_mask(y, pred).any()
    table = summary_table(np.arange(24.0).reshape(2, 12), keep=np.array([True, False]))
    assert list(table["type"]) == list(FEATURE_TYPES) and (table["n"] == 1).all()
    np.testing.assert_allclose(table["mean"], np.arange(12.0))


def test_hypothesis_direction() -> None:
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 0.1, (200, 12))
    values[:, FEATURE_TYPES.index("bond type")] += 0.5
    values[:, FEATURE_TYPES.index("spatial distance")] += 0.5
    zpve = hypothesis(values, "zpve")
    alpha = hypothesis(values, "alpha")
    assert zpve["observed_higher"] == "geometric" and zpve["holds"] is True and zpve["sign_test_p"] < 1e-6
    assert alpha["predicted_higher"] == "electronic" and alpha["holds"] is False
    assert zpve["geometric_mean_rank"] == 1.5
