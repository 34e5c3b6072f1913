"""The ``alpha_tensor`` target: the static polarizability tensor (a.u., QM9 frame) and its metrics.

Labels come from the published beta label folder (``beta_data.labels``): ``alpha_au`` (9 values, index
3a + b, a.u.), computed on QM9's geometries as given (the frame of the vector labels,
:mod:`qmlrp.targets.vectors`). They are symmetrised and stored as the 6 independent components
``(xx, yy, zz, xy, xz, yz)``. Derived, rotation-invariant: the isotropic alpha (trace / 3) and the
anisotropy ``Delta alpha = sqrt(((l1 - l2)^2 + (l2 - l3)^2 + (l3 - l1)^2) / 2)`` (l the eigenvalues), which
equals ``sqrt(3/2) |alpha - alpha_iso I|_F``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.targets.label_folder import label_rows, mae_mad

COMPONENTS: tuple[str, ...] = ("xx", "yy", "zz", "xy", "xz", "yz")
"""Output order of the 6 independent components."""
IDENTITY = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
"""The identity matrix as components."""
FROBENIUS_WEIGHTS = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
"""``|M|_F^2 = sum_c FROBENIUS_WEIGHTS_c M_c^2`` (each off-diagonal component appears twice)."""


def tensor_matrices(components: np.ndarray) -> np.ndarray:
    """(n, 3, 3) symmetric matrices from (n, 6) ``(xx, yy, zz, xy, xz, yz)``."""
    c = np.asarray(components, np.float64).reshape(-1, 6)
    xx, yy, zz, xy, xz, yz = c.T
    return np.stack([np.stack([xx, xy, xz], -1), np.stack([xy, yy, yz], -1), np.stack([xz, yz, zz], -1)], axis=1)


def tensor_components(matrices: np.ndarray) -> np.ndarray:
    """(n, 6) ``(xx, yy, zz, xy, xz, yz)`` of (n, 3, 3) matrices (or (n, 9), index 3a + b), symmetrised."""
    m = np.asarray(matrices, np.float64).reshape(-1, 3, 3)
    m = (m + m.transpose(0, 2, 1)) / 2
    return np.stack([m[:, 0, 0], m[:, 1, 1], m[:, 2, 2], m[:, 0, 1], m[:, 0, 2], m[:, 1, 2]], axis=1)


def isotropic(components: np.ndarray) -> np.ndarray:
    """(n,) trace / 3."""
    return np.asarray(components, np.float64).reshape(-1, 6)[:, :3].mean(axis=1)


def traceless(components: np.ndarray) -> np.ndarray:
    """(n, 6) the traceless part ``T - (tr T / 3) I``."""
    c = np.asarray(components, np.float64).reshape(-1, 6)
    return c - isotropic(c)[:, None] * IDENTITY


def frobenius(components: np.ndarray) -> np.ndarray:
    """(n,) Frobenius norm of each symmetric tensor."""
    c = np.asarray(components, np.float64).reshape(-1, 6)
    return np.sqrt(np.sum(FROBENIUS_WEIGHTS * c * c, axis=1))


def anisotropy(components: np.ndarray) -> np.ndarray:
    """(n,) ``Delta alpha = sqrt(3/2) |T - tr T / 3 I|_F`` (= the eigenvalue form)."""
    return np.sqrt(1.5) * frobenius(traceless(components))


def load_tensor_targets(store: FeatureStore, labels: str | Path) -> np.ndarray:
    """(len(store), 6) float64 alpha components (a.u.), aligned with the store's molecules.

    Raises:
        QmlrpError: one line when the folder holds no labels or a featurized molecule has none.
    """
    frame = label_rows(store, labels)
    y = tensor_components(np.stack(frame["alpha_au"].map(np.asarray)))
    if not np.all(np.isfinite(y)):
        raise QmlrpError(f"{labels}: non-finite polarizability tensor")
    return y


def tensor_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, object]:
    """Test metrics of (n, 6) predictions against labels, a.u.: MAE, MAD and MAE/MAD of the isotropic alpha,
    the anisotropy, each component, and the tensor (``frobenius``: mean |T_pred - T|_F; its MAD is the mean
    |T - mean T|_F of the labels)."""
    t = np.asarray(y_true, np.float64).reshape(-1, 6)
    p = np.asarray(y_pred, np.float64).reshape(-1, 6)
    err, spread = float(np.mean(frobenius(p - t))), float(np.mean(frobenius(t - t.mean(axis=0))))
    return {
        "n": len(t),
        "isotropic": mae_mad(isotropic(t), isotropic(p)),
        "anisotropy": mae_mad(anisotropy(t), anisotropy(p)),
        "frobenius": {"mae": err, "mad": spread, "mae_over_mad": err / spread if spread > 0 else float("nan")},
        "components": {name: mae_mad(t[:, k], p[:, k]) for k, name in enumerate(COMPONENTS)},
    }
