"""Reference models for small label sets: ridge on Morgan count fingerprints and kernel ridge on
Coulomb-matrix eigenvalues.

When a graph network's test MAE sits at the labels' MAD, the question is whether the network or the
data is at fault. Two closed-form references answer it, each with a penalty (and a kernel width)
chosen on the validation molecules and no training noise: if one beats the network the network is at
fault; if neither beats the mean, the labels carry too little learnable structure at this count.

* Ridge on topology: per molecule the RDKit Morgan count fingerprint (radius 2, ``n_bits`` folded
  bits, hydrogens explicit) plus element counts (H, C, N, O, F); columns standardised on the training
  molecules.
* Kernel ridge on geometry: the sorted eigenvalues of the Coulomb matrix (Rupp 2012; atomic units,
  zero-padded to 29), a Laplacian kernel on the standardised eigenvalues. It sees the 3-D structure
  the fingerprints lack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qmlrp.errors import QmlrpError

ELEMENTS = ("H", "C", "N", "O", "F")
LAMBDAS = tuple(float(x) for x in np.logspace(-1, 5, 13))
"""Ridge penalties tried (on standardised columns), chosen by validation MAE."""
KERNEL_WIDTHS = (0.1, 0.3, 1.0, 3.0, 10.0)
"""Laplacian kernel widths tried, in units of the median L1 distance between training molecules."""
KERNEL_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0)
"""Kernel-ridge penalties tried (the kernel's diagonal is 1)."""
BOHR_PER_ANGSTROM = 1.0 / 0.529177210903
COULOMB_SIZE = 29
"""Eigenvalues kept per molecule: QM9's largest molecule has 29 atoms."""


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


def coulomb_eigenvalues(atomic_numbers: Sequence[np.ndarray], coordinates: Sequence[np.ndarray],
                        size: int = COULOMB_SIZE) -> np.ndarray:
    """Sorted (descending) Coulomb-matrix eigenvalues, shape ``(n, size)`` float64, zero-padded.

    Per molecule M_ii = Z_i^2.4 / 2 and M_ij = Z_i Z_j / r_ij with r in bohr (Hartree units).

    Args:
        atomic_numbers: per molecule (N,) integers.
        coordinates: per molecule positions in Å, (N, 3) or flat (3N,).

    Raises:
        QmlrpError: a molecule with more than ``size`` atoms, coordinates that do not match its
            atoms, or two atoms at one position (named by row).
    """
    rows = np.zeros((len(atomic_numbers), size))
    for i, (numbers, positions) in enumerate(zip(atomic_numbers, coordinates)):
        z = np.asarray(numbers, np.float64).reshape(-1)
        r = np.asarray(positions, np.float64)
        if z.size > size or r.size != 3 * z.size:
            raise QmlrpError(f"coulomb_eigenvalues: row {i} has {z.size} atoms and {r.size} coordinates "
                             f"(at most {size} atoms, 3 coordinates each)")
        r = r.reshape(-1, 3) * BOHR_PER_ANGSTROM
        distance = np.linalg.norm(r[:, None, :] - r[None, :, :], axis=-1)
        off = ~np.eye(z.size, dtype=bool)
        if np.any(distance[off] == 0.0):
            raise QmlrpError(f"coulomb_eigenvalues: row {i} has two atoms at one position")
        matrix = np.where(off, np.outer(z, z) / np.where(off, distance, 1.0), 0.5 * z**2.4)
        rows[i, :z.size] = np.sort(np.linalg.eigvalsh(matrix))[::-1]
    return rows


@dataclass(frozen=True)
class KernelRidgeFit:
    """A fitted kernel ridge model, Laplacian kernel exp(-|a - b|_1 / width) on standardised columns."""

    basis: np.ndarray     # (m, d) standardised training rows
    mean: np.ndarray      # (d,)
    scale: np.ndarray     # (d,) (1 where constant)
    coefficients: np.ndarray  # (m,)
    intercept: float      # target units (the training mean)
    width: float          # kernel width, in standardised L1 units
    penalty: float
    validation_mae: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions (n,) in target units for rows ``x`` (n, d)."""
        return _laplacian((x - self.mean) / self.scale, self.basis, self.width) @ self.coefficients + self.intercept


def _laplacian(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """(len(a), len(b)) kernel exp(-|a_i - b_j|_1 / width)."""
    return np.exp(-np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1) / width)


def fit_kernel_ridge(x: np.ndarray, y: np.ndarray, train: np.ndarray, validation: np.ndarray,
                     widths: Sequence[float] = KERNEL_WIDTHS,
                     penalties: Sequence[float] = KERNEL_PENALTIES) -> KernelRidgeFit:
    """Fit on rows ``train`` of ``x`` (n, d) / ``y`` (n,): coefficients (K + λI)⁻¹ (y − ȳ), width
    (× the median L1 distance between training rows) and λ chosen by the MAE on rows ``validation``."""
    if train.size < 2 or validation.size < 1:
        raise QmlrpError(f"fit_kernel_ridge: needs ≥ 2 training and ≥ 1 validation rows, "
                         f"got {train.size} and {validation.size}")
    y = np.asarray(y, np.float64)
    xt, yt = x[train], y[train]
    mean = xt.mean(axis=0)
    scale = xt.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    a = (xt - mean) / scale
    distances = np.abs(a[:, None, :] - a[None, :, :]).sum(axis=-1)
    median = float(np.median(distances[np.triu_indices(len(a), 1)]))
    median = median if median > 0 else 1.0
    intercept = float(yt.mean())
    best: KernelRidgeFit | None = None
    for width in widths:
        kernel = np.exp(-distances / (width * median))
        for penalty in penalties:
            coefficients = np.linalg.solve(kernel + penalty * np.eye(len(a)), yt - intercept)
            fit = KernelRidgeFit(a, mean, scale, coefficients, intercept, float(width * median), float(penalty), np.inf)
            mae = float(np.mean(np.abs(fit.predict(x[validation]) - y[validation])))
            if best is None or mae < best.validation_mae:
                best = replace(fit, validation_mae=mae)
    assert best is not None
    return best


def reference_inputs(table: str | Path, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(fingerprints (n, 2053), Coulomb eigenvalues (n, 29)) of the molecules ``ids`` (in that order)
    of the Parquet ``table`` (columns id, smiles, atomic_numbers, coordinates in Å).

    Raises:
        QmlrpError: a molecule missing from the table or without SMILES (named by id).
    """
    import pandas as pd

    frame = pd.read_parquet(table, columns=["id", "smiles", "atomic_numbers", "coordinates"]).set_index("id")
    frame = frame.reindex([int(i) for i in ids])
    missing = frame["smiles"].isna()
    if missing.any():
        raise QmlrpError(f"{table}: no SMILES for featurized molecule id {int(frame.index[missing][0])} "
                         f"(the reference models need one per molecule)")
    return (fingerprint_matrix(frame["smiles"].tolist()),
            coulomb_eigenvalues(frame["atomic_numbers"].tolist(), frame["coordinates"].tolist()))


def reference_maes(fingerprints: np.ndarray, coulomb: np.ndarray, y: np.ndarray, train: np.ndarray,
                   validation: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Test MAEs (target units) of the three references on one split.

    ``ridge_mae``: :func:`fit_ridge` on ``fingerprints`` (n, d) (penalty ``ridge_penalty``);
    ``krr_mae``: :func:`fit_kernel_ridge` on ``coulomb`` (n, 29); ``mean_mae``: the mean of
    ``y[train]`` predicted for every test molecule. Penalties and width are chosen on ``validation``.
    """
    y = np.asarray(y, np.float64)
    ridge = fit_ridge(fingerprints, y, train, validation)
    kernel = fit_kernel_ridge(coulomb, y, train, validation)
    return {"ridge_mae": float(np.mean(np.abs(ridge.predict(fingerprints[test]) - y[test]))),
            "ridge_penalty": ridge.penalty,
            "krr_mae": float(np.mean(np.abs(kernel.predict(coulomb[test]) - y[test]))),
            "krr_penalty": kernel.penalty,
            "mean_mae": float(np.mean(np.abs(np.mean(y[train]) - y[test])))}
