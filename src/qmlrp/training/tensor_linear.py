"""The equivariant *linear* baseline of the tensor head: the per-atom scalars linear in the atom's features.

``a_a = w . x_a`` and ``b_a = u . x_a`` with ``x_a`` (42,) the atom's features and its bonded neighbours'
(:func:`qmlrp.training.vector_linear.atom_environment`), then the head's construction
(:mod:`qmlrp.models.tensor_head`): ``T_m = sum_a a_a I + sum_a b_a (d_a d_a^T - |d_a|^2/3 I)``. So the
isotropic alpha is a ridge regression on the molecule's summed features ``sum_a x_a`` (atom and bond counts),
and the traceless part one of its 6 components (off-diagonals weighted sqrt(2), so that least squares is the
Frobenius norm) on ``D_mck = sum_a x_ak Q_ac``; each penalty chosen on the validation molecules. Equivariant
by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmlrp.features.layout import ATOMIC_NUMBERS
from qmlrp.features.store import FeatureStore
from qmlrp.targets.tensors import (
    FROBENIUS_WEIGHTS,
    IDENTITY,
    frobenius,
    isotropic,
    traceless,
)
from qmlrp.training.vector_linear import PENALTIES, atom_environment


def tensor_descriptors(store: FeatureStore, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(S (n, 42) summed atom features, D (n, 6, 42) = sum_a x_ak Q_a)``, Q the traceless ``d d^T - |d|^2/3 I``
    (Angstrom^2) with d from the centre of nuclear charge."""
    x, r, owner = atom_environment(store, positions)
    n = len(positions)
    z = x[:, :len(ATOMIC_NUMBERS)] @ np.asarray(ATOMIC_NUMBERS, np.float64)
    centre = np.zeros((n, 3))
    np.add.at(centre, owner, r * z[:, None])
    centre /= np.bincount(owner, weights=z, minlength=n)[:, None]
    d = r - centre[owner]
    third = (d * d).sum(axis=1) / 3
    q = np.stack([d[:, 0] ** 2 - third, d[:, 1] ** 2 - third, d[:, 2] ** 2 - third,
                  d[:, 0] * d[:, 1], d[:, 0] * d[:, 2], d[:, 1] * d[:, 2]], axis=1)
    s = np.zeros((n, x.shape[1]))
    np.add.at(s, owner, x)
    out = np.zeros((n, 6, x.shape[1]))
    np.add.at(out, owner, q[:, :, None] * x[:, None, :])
    return s, out


def _ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    gram = x.T @ x
    scale = np.trace(gram) / gram.shape[0]
    return np.linalg.solve(gram + penalty * scale * np.eye(gram.shape[0]), x.T @ y)


@dataclass(frozen=True)
class LinearTensorModel:
    """Weights of the isotropic (42,) and traceless (42,) parts and their chosen relative penalties."""

    w_iso: np.ndarray
    w_aniso: np.ndarray
    penalties: tuple[float, float]

    def predict(self, s: np.ndarray, d: np.ndarray) -> np.ndarray:
        """(n, 6) a.u. from descriptors ``(S, D)``."""
        return (s @ self.w_iso)[:, None] * IDENTITY + d @ self.w_aniso


def fit_linear_tensor(train: tuple[np.ndarray, np.ndarray], y_train: np.ndarray,
                      val: tuple[np.ndarray, np.ndarray], y_val: np.ndarray) -> LinearTensorModel:
    """Ridge fits of the isotropic and the traceless part, penalties chosen on validation (MAE, Frobenius)."""
    root = np.sqrt(FROBENIUS_WEIGHTS)[None, :, None]
    (s_t, d_t), (s_v, d_v) = train, val
    iso_t, free_t = isotropic(y_train), traceless(y_train)
    lam_iso = min(PENALTIES, key=lambda lam: np.mean(np.abs(s_v @ _ridge(s_t, iso_t, lam) - isotropic(y_val))))
    xs = (d_t * root).reshape(-1, d_t.shape[-1])
    ys = (free_t * root[..., 0]).reshape(-1)
    lam_aniso = min(PENALTIES, key=lambda lam: np.mean(frobenius(d_v @ _ridge(xs, ys, lam) - traceless(y_val))))
    return LinearTensorModel(_ridge(s_t, iso_t, lam_iso), _ridge(xs, ys, lam_aniso), (lam_iso, lam_aniso))
