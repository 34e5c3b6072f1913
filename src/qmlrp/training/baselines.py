"""A reference model for small label sets: ridge regression on Morgan count fingerprints.

When a graph network's test MAE sits at the labels' MAD, the question is whether the network or the
data is at fault. A ridge regression on substructure counts answers it: it has one hyper-parameter,
no training noise and a closed form, so if it beats the network the network is at fault, and if it
does not beat the mean either, the labels carry too little learnable structure at this count.

Features per molecule: RDKit Morgan count fingerprint (radius 2, ``n_bits`` folded bits, hydrogens
explicit) plus element counts (H, C, N, O, F). Columns are standardised on the training molecules;
the ridge penalty is chosen from ``LAMBDAS`` by the validation MAE, then the model is that fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from qmlrp.errors import QmlrpError

ELEMENTS = ("H", "C", "N", "O", "F")
LAMBDAS = tuple(float(x) for x in np.logspace(-1, 5, 13))
"""Ridge penalties tried (on standardised columns), chosen by validation MAE."""


def fingerprint_matrix(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Morgan count fingerprints and element counts, shape ``(len(smiles), n_bits + 5)`` float64.

    Raises:
        QmlrpError: a SMILES RDKit cannot parse (named, with its position).
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdFingerprintGenerator

    RDLogger.DisableLog("rdApp.*")
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    rows = np.zeros((len(smiles), n_bits + len(ELEMENTS)))
    for i, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(str(text))
        if mol is None:
            raise QmlrpError(f"fingerprint baseline: SMILES {text!r} (row {i}) does not parse")
        mol = Chem.AddHs(mol)
        rows[i, :n_bits] = generator.GetCountFingerprintAsNumPy(mol)
        symbols = [a.GetSymbol() for a in mol.GetAtoms()]
        rows[i, n_bits:] = [symbols.count(e) for e in ELEMENTS]
    return rows


@dataclass(frozen=True)
class RidgeFit:
    """A fitted ridge model on standardised columns (predict with :meth:`predict`)."""

    mean: np.ndarray      # (d,) column means of the training rows
    scale: np.ndarray     # (d,) column sd (1 where constant)
    weights: np.ndarray   # (d,)
    intercept: float      # target units
    penalty: float        # the chosen λ
    validation_mae: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions (n,) in target units for rows ``x`` (n, d)."""
        return ((x - self.mean) / self.scale) @ self.weights + self.intercept


def _solve(a: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    """Ridge weights for centred ``a`` (n, d) and centred ``y`` (n,); the dual form when n < d."""
    n, d = a.shape
    if n < d:
        return a.T @ np.linalg.solve(a @ a.T + penalty * np.eye(n), y)
    return np.linalg.solve(a.T @ a + penalty * np.eye(d), a.T @ y)


def fit_ridge(x: np.ndarray, y: np.ndarray, train: np.ndarray, validation: np.ndarray,
              penalties: Sequence[float] = LAMBDAS) -> RidgeFit:
    """Fit on rows ``train`` of ``x`` (n, d) / ``y`` (n,), choosing λ by the MAE on rows ``validation``."""
    if train.size < 2 or validation.size < 1:
        raise QmlrpError(f"fit_ridge: needs ≥ 2 training and ≥ 1 validation rows, got {train.size} and {validation.size}")
    xt, yt = x[train], np.asarray(y, np.float64)[train]
    mean = xt.mean(axis=0)
    scale = xt.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    a = (xt - mean) / scale
    intercept = float(yt.mean())
    y = np.asarray(y, np.float64)
    best: RidgeFit | None = None
    for penalty in penalties:
        fit = RidgeFit(mean, scale, _solve(a, yt - intercept, float(penalty)), intercept, float(penalty), np.inf)
        mae = float(np.mean(np.abs(fit.predict(x[validation]) - y[validation])))
        if best is None or mae < best.validation_mae:
            best = replace(fit, validation_mae=mae)
    assert best is not None
    return best


def reference_maes(fingerprints: np.ndarray, y: np.ndarray, train: np.ndarray, validation: np.ndarray,
                   test: np.ndarray) -> dict[str, float]:
    """Test MAEs (target units) of the two references on one split.

    ``ridge_mae``: :func:`fit_ridge` on ``fingerprints`` (n, d) rows ``train``, λ chosen on ``validation``
    (``ridge_penalty``); ``mean_mae``: the mean of ``y[train]`` predicted for every test molecule.
    """
    y = np.asarray(y, np.float64)
    ridge = fit_ridge(fingerprints, y, train, validation)
    return {"ridge_mae": float(np.mean(np.abs(ridge.predict(fingerprints[test]) - y[test]))),
            "ridge_penalty": ridge.penalty,
            "mean_mae": float(np.mean(np.abs(np.mean(y[train]) - y[test])))}
