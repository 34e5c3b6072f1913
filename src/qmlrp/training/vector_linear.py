"""The equivariant *linear* baseline of the vector head: q_a linear in the atom's features.

``q_av = w_v . x_a`` with ``x_a`` (42,) the atom's 21 Molecular-Graph features and the sum of its bonded
neighbours' 21 (a first-shell local environment), then the same construction as the network's head
(:mod:`qmlrp.models.vector_head`): ``V_mv = sum_a (q_av - qbar_mv)(r_a - c_m) = sum_k w_vk D_mk`` with
the per-molecule descriptor ``D_mk = sum_a x_ak (r_a - rbar_m)`` (3,) (Angstrom). So each vector is a
ridge regression of its 3 Cartesian components (stacked as rows) on the 42 columns of D, closed form;
the penalty of each vector is chosen on the validation molecules (its Euclidean error). Equivariant by
construction: D rotates with the molecule, w is shared by the three components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmlrp.features.layout import PAIR_FEATURES
from qmlrp.features.store import FeatureStore

BOND_COLUMNS = [PAIR_FEATURES.index(f) for f in PAIR_FEATURES if f.startswith("bond_")]
PENALTIES = tuple(10.0 ** k for k in range(-6, 3))
"""Ridge penalties tried, relative to the mean diagonal of D^T D."""


def atom_environment(store: FeatureStore, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x (n_atoms, 42), coordinates (n_atoms, 3) Angstrom, atom_molecule (n_atoms,))`` of the
    molecules at ``positions``: atom features and the sum of the bonded neighbours' features."""
    batch = store.batch(positions)
    x = np.asarray(batch.atom_features, np.float64)
    bonded = np.asarray(batch.pair_features)[:, BOND_COLUMNS].sum(axis=1) > 0
    i, j = np.asarray(batch.pair_atoms)[bonded].T
    neighbours = np.zeros_like(x)
    np.add.at(neighbours, i, x[j])
    np.add.at(neighbours, j, x[i])
    return (np.concatenate([x, neighbours], axis=1), store.atom_coordinates(positions).astype(np.float64),
            np.asarray(batch.atom_molecule))


def descriptors(store: FeatureStore, positions: np.ndarray) -> np.ndarray:
    """(len(positions), 3, 42) ``D_mik = sum_a x_ak (r_ai - rbar_mi)``, Angstrom."""
    x, r, owner = atom_environment(store, positions)
    n = len(positions)
    counts = np.bincount(owner, minlength=n).astype(np.float64)
    r_mean = np.zeros((n, 3))
    np.add.at(r_mean, owner, r)
    r_mean /= counts[:, None]
    g = r - r_mean[owner]
    out = np.zeros((n, 3, x.shape[1]))
    np.add.at(out, owner, g[:, :, None] * x[:, None, :])
    return out


@dataclass(frozen=True)
class LinearVectorModel:
    """Weights (V, 42) and the chosen relative penalty of each vector."""

    weights: np.ndarray
    penalties: tuple[float, ...]

    def predict(self, d: np.ndarray) -> np.ndarray:
        """(n, 3V) a.u. from descriptors (n, 3, 42)."""
        return np.concatenate([d @ w for w in self.weights], axis=1)


def _ridge(d: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    x = d.reshape(-1, d.shape[-1])
    gram = x.T @ x
    scale = np.trace(gram) / gram.shape[0]
    return np.linalg.solve(gram + penalty * scale * np.eye(gram.shape[0]), x.T @ y.reshape(-1))


def fit_linear(d_train: np.ndarray, y_train: np.ndarray, d_val: np.ndarray, y_val: np.ndarray) -> LinearVectorModel:
    """Ridge fit of each 3-vector of ``y`` (n, 3V) on ``d`` (n, 3, F), penalty chosen on validation."""
    n_vec = y_train.shape[1] // 3
    weights, chosen = [], []
    for v in range(n_vec):
        cols = slice(3 * v, 3 * v + 3)
        best = min(PENALTIES, key=lambda lam: np.mean(np.linalg.norm(
            d_val @ _ridge(d_train, y_train[:, cols], lam) - y_val[:, cols], axis=1)))
        weights.append(_ridge(d_train, y_train[:, cols], best))
        chosen.append(float(best))
    return LinearVectorModel(np.stack(weights), tuple(chosen))


def linear_learning_curve(store: FeatureStore, y: np.ndarray, folds_path: str, sizes: tuple[int, ...] = (104, 208, 416, 831),
                          n_folds: int = 10, seed: int = 20171010) -> dict[int, dict[str, float]]:
    """beta_par test MAE/MAD of the linear baseline against the number of training molecules: per fold,
    nested seeded subsamples of the training set (the validation split unchanged); mean and sd over folds."""
    from qmlrp.data.split import make_split
    from qmlrp.targets.vectors import vector_metrics

    d = descriptors(store, np.arange(len(store)))
    ratios: dict[int, list[float]] = {n: [] for n in sizes}
    for fold in range(n_folds):
        split = make_split(store, folds_path, fold, 0.1, seed)
        order = np.random.default_rng([seed, fold]).permutation(split.train)
        for n in sizes:
            train = np.sort(order[: min(n, order.size)])
            model = fit_linear(d[train], y[train], d[split.validation], y[split.validation])
            m = vector_metrics(y[split.test], model.predict(d[split.test]))
            ratios[n].append(m["beta_parallel"]["mae_over_mad"])
    return {n: {"mean": float(np.mean(r)), "sd": float(np.std(r, ddof=1))} for n, r in ratios.items()}
