"""Per-molecule relevance in the 12 feature types, normalisation across the data set, outliers,
and the study's hypothesis test.

Per molecule ``m`` and feature type ``T`` (columns ``C_T``, :mod:`qmlrp.features.layout`):

* signed:   ``v_mT = mean over the atoms (pairs) i of m of  sum_{c in C_T} R_ic``
* absolute: ``a_mT = mean over the atoms (pairs) i of m of  sum_{c in C_T} |R_ic|``

Atom types are averaged over atoms, pair types over the molecule's pairs (i < j).
Normalisation across the data set (:func:`normalise`): one affine map per table,
``(v - mean) / max|v - mean|`` with mean and max over all molecules *and* all 12 types, so that
every type, target and rule sits on the same [-1, 1] scale while the order of the types and the
ratios of their differences are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qmlrp.features.layout import ATOM_FEATURE_TYPES, N_ATOM_FEATURES, N_PAIR_FEATURES, PAIR_FEATURE_TYPES

FEATURE_TYPES: tuple[str, ...] = (*ATOM_FEATURE_TYPES, *PAIR_FEATURE_TYPES)
"""The 12 feature types: 8 atom types then 4 pair types."""
GEOMETRIC_TYPES: tuple[str, ...] = ("bond type", "spatial distance")
ELECTRONIC_TYPES: tuple[str, ...] = ("partial charge",)


def _type_matrix(types: Mapping[str, tuple[int, ...]], width: int) -> np.ndarray:
    """(width, n_types) 0/1 matrix summing feature columns into types."""
    m = np.zeros((width, len(types)))
    for t, cols in enumerate(types.values()):
        m[list(cols), t] = 1.0
    return m


ATOM_TYPE_MATRIX = _type_matrix(ATOM_FEATURE_TYPES, N_ATOM_FEATURES)
PAIR_TYPE_MATRIX = _type_matrix(PAIR_FEATURE_TYPES, N_PAIR_FEATURES)


def _mean_per_molecule(rows: np.ndarray, owner: np.ndarray, n_molecules: int) -> np.ndarray:
    """(n_molecules, k) means of ``rows`` (n_rows, k) per owner (NaN for an owner with no rows)."""
    counts = np.bincount(owner, minlength=n_molecules).astype(np.float64)
    sums = np.zeros((n_molecules, rows.shape[1]))
    np.add.at(sums, owner, rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def type_relevance(atoms: np.ndarray, pairs: np.ndarray, atom_molecule: np.ndarray, pair_molecule: np.ndarray,
                   n_molecules: int, absolute: bool = False, reduce: str = "mean") -> np.ndarray:
    """(n_molecules, 12) per-molecule relevance of each feature type (see module docstring).

    Args:
        atoms: (n_atoms, 21) atom-feature relevance; pairs: (n_pairs, 13) pair-feature relevance.
        atom_molecule, pair_molecule: molecule index (0..n_molecules-1) of each row.
        absolute: use ``|R|`` per feature before summing into types.
        reduce: ``"mean"`` over the molecule's atoms (pairs) -- the study's summary -- or ``"sum"``
            (the type's total share of the output; a molecule has ~n/2 times more pairs than
            atoms, so means favour atom types relative to totals).
    """
    a = np.abs(atoms) if absolute else atoms
    p = np.abs(pairs) if absolute else pairs
    if reduce == "sum":
        return type_totals(a, p, atom_molecule, pair_molecule, n_molecules)
    if reduce != "mean":
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    at = _mean_per_molecule(np.asarray(a, np.float64) @ ATOM_TYPE_MATRIX, atom_molecule, n_molecules)
    pt = _mean_per_molecule(np.asarray(p, np.float64) @ PAIR_TYPE_MATRIX, pair_molecule, n_molecules)
    return np.nan_to_num(np.hstack([at, pt]), nan=0.0)  # a one-atom molecule has no pairs: 0


def type_totals(atoms: np.ndarray, pairs: np.ndarray, atom_molecule: np.ndarray, pair_molecule: np.ndarray,
                n_molecules: int) -> np.ndarray:
    """(n_molecules, 12) per-molecule *sums* (not means) of each type's signed relevance."""
    at = np.zeros((n_molecules, len(ATOM_FEATURE_TYPES)))
    pt = np.zeros((n_molecules, len(PAIR_FEATURE_TYPES)))
    np.add.at(at, atom_molecule, np.asarray(atoms, np.float64) @ ATOM_TYPE_MATRIX)
    np.add.at(pt, pair_molecule, np.asarray(pairs, np.float64) @ PAIR_TYPE_MATRIX)
    return np.hstack([at, pt])


def type_shares(atoms: np.ndarray, pairs: np.ndarray, atom_molecule: np.ndarray, pair_molecule: np.ndarray,
                n_molecules: int) -> np.ndarray:
    """(n_molecules, 12) plain share of each type in the molecule's total ``|R|`` (summed over all
    its atoms and pairs): non-negative, each row sums to 1 (a row of 0 for a molecule whose
    explanation is empty). No normalisation across molecules, so magnitudes stay readable."""
    totals = type_totals(np.abs(atoms), np.abs(pairs), atom_molecule, pair_molecule, n_molecules)
    sums = totals.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, totals / sums, 0.0)


@dataclass(frozen=True)
class Normalisation:
    """``(v - shift) / scale``: the affine map of :func:`normalise`."""

    shift: float
    scale: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        return (values - self.shift) / self.scale


def normalise(values: np.ndarray) -> tuple[np.ndarray, Normalisation]:
    """Zero mean over all entries, scaled by the largest absolute deviation: values in [-1, 1]."""
    finite = values[np.isfinite(values)]
    shift = float(finite.mean()) if finite.size else 0.0
    scale = float(np.abs(finite - shift).max()) if finite.size else 1.0
    norm = Normalisation(shift, scale if scale > 0 else 1.0)
    return norm.apply(values), norm


def outlier_mask(y_true: np.ndarray, y_pred: np.ndarray, k_mae: float | None = None,
                 quantile: float | None = None) -> np.ndarray:
    """(n,) True for prediction outliers: ``|error| > k_mae * MAE`` and/or above the ``quantile``
    of ``|error|`` (either cut may be None)."""
    err = np.abs(np.asarray(y_pred) - np.asarray(y_true))
    mask = np.zeros(err.shape, bool)
    if k_mae is not None:
        mask |= err > k_mae * err.mean()
    if quantile is not None:
        mask |= err > np.quantile(err, quantile)
    return mask


def summary_table(values: np.ndarray, keep: np.ndarray | None = None) -> pd.DataFrame:
    """Mean, standard deviation, median and count over molecules of each type's column."""
    v = values if keep is None else values[keep]
    return pd.DataFrame({
        "type": FEATURE_TYPES,
        "kind": ["atom"] * len(ATOM_FEATURE_TYPES) + ["pair"] * len(PAIR_FEATURE_TYPES),
        "mean": v.mean(0) if len(v) else np.nan,
        "std": v.std(0) if len(v) else np.nan,
        "median": np.median(v, 0) if len(v) else np.nan,
        "n": len(v),
    })


def ranking(means: np.ndarray) -> list[str]:
    """Feature types ordered by decreasing value."""
    return [FEATURE_TYPES[k] for k in np.argsort(-np.asarray(means), kind="stable")]


def hypothesis(absolute_values: np.ndarray, target: str) -> dict[str, object]:
    """Test "geometric types (bond type, spatial distance) rank above electronic ones (partial
    charge) for ZPVE, and below them for alpha" on one target's per-molecule absolute relevance.

    Per molecule, the geometric score is the mean normalised absolute relevance of the geometric
    types, the electronic score that of the electronic types; a two-sided sign test (binomial)
    asks whether "geometric > electronic" holds in more molecules than chance.

    Returns ranks (1 = most relevant) of each group by mean, the share of molecules with
    geometric > electronic, the sign test p-value, the predicted direction for this target and
    whether the data agree with it.
    """
    from scipy.stats import binomtest

    means = absolute_values.mean(0)
    order = ranking(means)
    rank = {t: order.index(t) + 1 for t in FEATURE_TYPES}
    geo_idx = [FEATURE_TYPES.index(t) for t in GEOMETRIC_TYPES]
    ele_idx = [FEATURE_TYPES.index(t) for t in ELECTRONIC_TYPES]
    geo = absolute_values[:, geo_idx].mean(1)
    ele = absolute_values[:, ele_idx].mean(1)
    wins = int((geo > ele).sum())
    ties = int((geo == ele).sum())
    n = len(geo) - ties
    p_value = float(binomtest(wins, n, 0.5).pvalue) if n > 0 else float("nan")
    predicted = "geometric" if target == "zpve" else "electronic" if target == "alpha" else None
    observed = "geometric" if geo.mean() > ele.mean() else "electronic"
    return {
        "geometric_types": list(GEOMETRIC_TYPES),
        "electronic_types": list(ELECTRONIC_TYPES),
        "geometric_mean_rank": float(np.mean([rank[t] for t in GEOMETRIC_TYPES])),
        "electronic_mean_rank": float(np.mean([rank[t] for t in ELECTRONIC_TYPES])),
        "geometric_score": float(geo.mean()),
        "electronic_score": float(ele.mean()),
        "share_geometric_above": wins / n if n else float("nan"),
        "sign_test_p": p_value,
        "predicted_higher": predicted,
        "observed_higher": observed,
        "holds": None if predicted is None else bool(predicted == observed and p_value < 0.05),
    }
