"""The ``beta_vector`` target: mu and beta_vec (a.u., QM9 frame) of the labelled molecules, and its metrics.

Labels come from the published label folder (``beta_data.labels``, e.g. ``labels/beta/rks-b3lyp5-6-31g``):
``dipole_au`` (3) and ``beta_vec_i = sum_j beta_ijj`` from ``beta_au`` (27, index 9a + 3b + c). They are in
the frame of QM9's coordinates (the labels were computed on QM9's geometries as given; checked on the 1,026
labels: the Mulliken-charge dipole from QM9's coordinates points along ``dipole_au``, median cosine 0.98).
beta_par = 3/5 beta_vec . mu_hat reproduces the labels' ``beta_parallel_au`` to 1e-13 a.u.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmlrp.errors import QmlrpError
from qmlrp.features.store import FeatureStore
from qmlrp.targets.label_folder import label_rows, mae_mad

N_COMPONENTS = 6
COMPONENTS: tuple[str, ...] = ("mu_x", "mu_y", "mu_z", "beta_vec_x", "beta_vec_y", "beta_vec_z")


def vectors_from_labels(dipole_au: np.ndarray, beta_au: np.ndarray) -> np.ndarray:
    """(n, 6) ``[mu, beta_vec]`` from dipoles (n, 3) and beta tensors (n, 27) or (n, 3, 3, 3), a.u."""
    mu = np.asarray(dipole_au, np.float64).reshape(-1, 3)
    beta = np.asarray(beta_au, np.float64).reshape(-1, 3, 3, 3)
    return np.concatenate([mu, np.einsum("nijj->ni", beta)], axis=1)


def load_vector_targets(store: FeatureStore, labels: str | Path) -> np.ndarray:
    """(len(store), 6) float64 ``[mu (3), beta_vec (3)]`` in a.u., aligned with the store's molecules.

    Raises:
        QmlrpError: one line when the folder holds no labels or a featurized molecule has none.
    """
    frame = label_rows(store, labels)
    y = vectors_from_labels(np.stack(frame["dipole_au"].map(np.asarray)), np.stack(frame["beta_au"].map(np.asarray)))
    if not np.all(np.isfinite(y)):
        raise QmlrpError(f"{labels}: non-finite dipole or β tensor")
    return y


def parallel_from_vectors(vectors: np.ndarray) -> np.ndarray:
    """(n,) beta_par = 3/5 beta_vec . mu / |mu| (a.u.) from (n, 6); NaN where mu = 0."""
    v = np.asarray(vectors, np.float64).reshape(-1, N_COMPONENTS)
    mu_norm = np.linalg.norm(v[:, :3], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 0.6 * np.einsum("ni,ni->n", v[:, 3:], v[:, :3]) / mu_norm
    return np.where(mu_norm > 0, out, np.nan)


def vector_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, object]:
    """Test metrics of (n, 6) predictions against labels, a.u.: MAE, MAD and MAE/MAD of beta_par,
    |beta_vec| and |mu|; MAE of each Cartesian component; the share of molecules whose beta_par sign
    is right (``beta_parallel_sign_accuracy``)."""
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    par_t, par_p = parallel_from_vectors(t), parallel_from_vectors(p)
    return {
        "n": int(len(t)),
        "beta_parallel": mae_mad(par_t, par_p),
        "beta_vec_norm": mae_mad(np.linalg.norm(t[:, 3:], axis=1), np.linalg.norm(p[:, 3:], axis=1)),
        "mu_norm": mae_mad(np.linalg.norm(t[:, :3], axis=1), np.linalg.norm(p[:, :3], axis=1)),
        "component_mae": {name: float(np.mean(np.abs(p[:, k] - t[:, k]))) for k, name in enumerate(COMPONENTS)},
        "beta_parallel_sign_accuracy": float(np.mean(np.sign(par_t) == np.sign(par_p))),
    }
