"""The kinds of target: how labels load, which file a run's predictions go to, how an ensemble's
values combine, the metric, and how one molecule's prediction is reported.

* ``scalar`` -- one value per molecule (alpha a0^3, ZPVE eV, omega_1 cm^-1, beta_par a.u.);
  predictions in ``predictions.csv``; the metric is the MAE.
* ``padded_vector`` -- the harmonic frequencies (cm^-1, highest first, NaN-padded to 81); predictions
  in ``predictions.parquet``; the metric is the MAE over real modes; a report lists the molecule's
  3N - 6 (3N - 5 if linear) modes.
* ``equivariant_vector`` -- mu (3) and beta_vec (3) in the molecule's own frame (a.u.); the ensemble
  adds beta_par = 3/5 beta_vec . mu_hat per model (column 6); the metric is beta_par's MAE.
* ``equivariant_tensor`` -- the polarizability tensor's 6 components (xx, yy, zz, xy, xz, yz; a.u., the
  molecule's own frame); the ensemble adds the isotropic alpha and the anisotropy per model (columns 6,
  7); the metric is the mean Frobenius norm of the error tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from qmlrp.errors import QmlrpError

if TYPE_CHECKING:
    from qmlrp.data.molecule_files import MoleculeInput


@dataclass(frozen=True)
class TargetKind:
    """Behaviour shared by the targets of one kind (compared by identity: ``kind is SCALAR``)."""

    name: str
    predictions_file: str

    def combine(self, values: np.ndarray) -> np.ndarray:
        """The fold models' values (n_models, n[, n_outputs]) with derived columns appended (none here)."""
        return values

    def metric(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        """The headline test metric of one run (target units): MAE over the real (non-NaN) labels."""
        from qmlrp.targets.spectra import masked_mae

        return masked_mae(y_pred, y_true)

    def report(self, mean: np.ndarray, sd: np.ndarray, molecule: MoleculeInput, units: str, n_models: int
               ) -> dict[str, Any]:
        """One molecule's prediction: ``mean``, ``sd`` (None from a single model), ``units``, ``n_models``."""
        return {"mean": float(mean), "sd": float(sd) if n_models > 1 else None, "units": units,
                "n_models": n_models}


@dataclass(frozen=True)
class PaddedVectorKind(TargetKind):
    """The harmonic frequencies: a padded vector whose real length depends on the molecule."""

    def report(self, mean: np.ndarray, sd: np.ndarray, molecule: MoleculeInput, units: str, n_models: int
               ) -> dict[str, Any]:
        """Cut to the molecule's real modes: ``mean``/``sd`` lists (cm^-1, highest first), ``n_modes``
        (3N - 6, or 3N - 5 if ``linear``)."""
        from qmlrp.targets.spectra import is_linear, n_modes

        linear = is_linear(molecule.coordinates)
        k = n_modes(int(molecule.atomic_numbers.size), linear)
        if k > mean.size:
            raise QmlrpError(f"{molecule.file} [{molecule.name}]: {k} modes, more than the model's {mean.size} outputs")
        return {"mean": [float(v) for v in mean[:k]], "sd": [float(v) for v in sd[:k]] if n_models > 1 else None,
                "units": units, "n_models": n_models, "n_modes": k, "linear": linear}


@dataclass(frozen=True)
class EquivariantVectorKind(TargetKind):
    """mu and beta_vec, rotating with the molecule; beta_par derived from them."""

    def combine(self, values: np.ndarray) -> np.ndarray:
        """(n_models, n, 7): ``[mu (3), beta_vec (3)]`` and each model's beta_par (column 6)."""
        from qmlrp.targets.vectors import parallel_from_vectors

        par = np.stack([parallel_from_vectors(v) for v in values])
        return np.concatenate([values, par[..., None]], axis=-1)

    def metric(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        """beta_par's MAE (a.u.) from (n, 6) vectors."""
        from qmlrp.targets.vectors import parallel_from_vectors

        return float(np.nanmean(np.abs(parallel_from_vectors(y_pred) - parallel_from_vectors(y_true))))

    def report(self, mean: np.ndarray, sd: np.ndarray, molecule: MoleculeInput, units: str, n_models: int
               ) -> dict[str, Any]:
        """``mean``/``sd`` of beta_par (3/5 beta_vec . mu_hat, a.u., over the fold models), and ``mu``,
        ``beta_vec`` (3, a.u., the input geometry's frame) with their sds."""
        many = n_models > 1
        return {"mean": float(mean[6]), "sd": float(sd[6]) if many else None, "units": units, "n_models": n_models,
                "quantity": "beta_parallel = 3/5 beta_vec . mu_hat",
                "mu": [float(v) for v in mean[0:3]], "mu_sd": [float(v) for v in sd[0:3]] if many else None,
                "beta_vec": [float(v) for v in mean[3:6]], "beta_vec_sd": [float(v) for v in sd[3:6]] if many else None}


@dataclass(frozen=True)
class EquivariantTensorKind(TargetKind):
    """A symmetric rank-2 tensor (6 components) rotating as R T R^T; isotropic part and anisotropy derived."""

    def combine(self, values: np.ndarray) -> np.ndarray:
        """(n_models, n, 8): the 6 components, each model's isotropic alpha (column 6) and anisotropy (7)."""
        from qmlrp.targets.tensors import anisotropy, isotropic

        derived = np.stack([np.stack([isotropic(v), anisotropy(v)], axis=-1) for v in values])
        return np.concatenate([values, derived], axis=-1)

    def metric(self, y_pred: np.ndarray, y_true: np.ndarray) -> float:
        """Mean Frobenius norm of the error tensor (a.u.) from (n, 6) components."""
        from qmlrp.targets.tensors import frobenius

        return float(np.mean(frobenius(np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64))))

    def report(self, mean: np.ndarray, sd: np.ndarray, molecule: MoleculeInput, units: str, n_models: int
               ) -> dict[str, Any]:
        """``mean``/``sd`` of the isotropic alpha (over the fold models), the anisotropy with its sd, and the
        6 components ``(xx, yy, zz, xy, xz, yz)`` (the input geometry's frame) with their sds."""
        many = n_models > 1
        return {"mean": float(mean[6]), "sd": float(sd[6]) if many else None, "units": units, "n_models": n_models,
                "quantity": "isotropic alpha = trace / 3",
                "anisotropy": float(mean[7]), "anisotropy_sd": float(sd[7]) if many else None,
                "components": [float(v) for v in mean[0:6]],
                "components_sd": [float(v) for v in sd[0:6]] if many else None,
                "component_order": ["xx", "yy", "zz", "xy", "xz", "yz"]}


SCALAR = TargetKind("scalar", "predictions.csv")
PADDED_VECTOR = PaddedVectorKind("padded_vector", "predictions.parquet")
EQUIVARIANT_VECTOR = EquivariantVectorKind("equivariant_vector", "predictions.parquet")
EQUIVARIANT_TENSOR = EquivariantTensorKind("equivariant_tensor", "predictions.parquet")
