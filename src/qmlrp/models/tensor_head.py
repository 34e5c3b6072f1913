"""Equivariant rank-2 readout: the static polarizability tensor alpha from per-atom scalars and positions.

For each molecule m::

    (a_a, b_a) = MLP(h_a)                        two per-atom scalars from the atom embedding h_a
    d_a        = r_a - c_m                       c_m the molecule's centre of nuclear charge
    T_m        = s_iso sum_a a_a I + s_aniso sum_a b_a (d_a d_a^T - |d_a|^2 / 3 I)     (3, 3), a.u.

The first term is isotropic (a multiple of the identity), the second traceless; ``T`` is symmetric. Rotating
the molecule (r -> R r) gives ``R T R^T``; translating it changes nothing (d is relative to c_m); permuting its
atoms changes nothing (the a, b depend on the graph only). Output (n_molecules, 6) in the order
``(xx, yy, zz, xy, xz, yz)`` (:data:`COMPONENTS`).

For fixed geometry ``T`` is *linear* in the scaled per-atom scalars with coefficients ``basis_akc`` (the
identity's components for a, those of ``d d^T - |d|^2/3 I`` for b; recorded as ``basis``), no bias: the
per-atom contributions to any fixed output functional ``sum_c w_c T_c`` (e.g. the isotropic alpha,
w = (1/3, 1/3, 1/3, 0, 0, 0)) are exact and sum to it; this is the LRP rule of :class:`ChargeTensor`
(:mod:`qmlrp.relevance.layer_rules`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from qmlrp.models.layers import PACKAGE, SplitDense, Tape, build_once, run
from qmlrp.models.vector_head import nuclear_charges

COMPONENTS: tuple[str, ...] = ("xx", "yy", "zz", "xy", "xz", "yz")
"""The 6 independent components of a symmetric 3x3 tensor, in output order."""


def charge_centres(coordinates: Any, charges: Any, atom_molecule: Any, n_molecules: Any) -> Any:
    """(n_molecules, 3) centre of nuclear charge (the mean position where a molecule's Z sum to 0, e.g. padding)."""
    ones = ops.ones_like(charges)
    count = ops.maximum(ops.segment_sum(ones, atom_molecule, num_segments=n_molecules), 1.0)
    z_sum = ops.segment_sum(charges, atom_molecule, num_segments=n_molecules)
    zr = ops.segment_sum(coordinates * charges[:, None], atom_molecule, num_segments=n_molecules)
    r_mean = ops.segment_sum(coordinates, atom_molecule, num_segments=n_molecules) / count[:, None]
    safe = ops.where(z_sum > 0, z_sum, ops.ones_like(z_sum))
    return ops.where((z_sum > 0)[:, None], zr / safe[:, None], r_mean)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChargeTensor(keras.layers.Layer):
    """Weightless: ``(p (n_atoms, 2), coordinates (n_atoms, 3) Angstrom, Z (n_atoms,), atom_molecule,
    n_molecules) -> (n_molecules, 6)``, ``T_m = sum_a p_a0 I + p_a1 (d_a d_a^T - |d_a|^2/3 I)`` as
    ``(xx, yy, zz, xy, xz, yz)``, ``d_a = r_a - c_m`` (``c_m`` the centre of nuclear charge)."""

    def call(self, p: Any, coordinates: Any, charges: Any, atom_molecule: Any, n_molecules: Any) -> Any:
        return self.trace(p, coordinates, charges, atom_molecule, n_molecules)["out"]

    def trace(self, p: Any, coordinates: Any, charges: Any, atom_molecule: Any, n_molecules: Any) -> dict[str, Any]:
        """``out`` (n_mol, 6); ``rel`` (n_atoms, 3) d_a; ``basis`` (n_atoms, 2, 6) the coefficients of p."""
        coords = ops.cast(coordinates, p.dtype)
        charges = ops.cast(charges, p.dtype)
        rel = coords - ops.take(charge_centres(coords, charges, atom_molecule, n_molecules), atom_molecule, axis=0)
        x, y, z = rel[:, 0], rel[:, 1], rel[:, 2]
        third = (x * x + y * y + z * z) / 3.0
        aniso = ops.stack([x * x - third, y * y - third, z * z - third, x * y, x * z, y * z], axis=-1)
        iso = ops.broadcast_to(ops.cast(np.array([1, 1, 1, 0, 0, 0], np.float32), p.dtype), ops.shape(aniso))
        basis = ops.stack([iso, aniso], axis=1)  # (n_atoms, 2, 6)
        per_atom = ops.sum(p[:, :, None] * basis, axis=1)  # (n_atoms, 6)
        out = ops.segment_sum(per_atom, atom_molecule, num_segments=n_molecules)
        return {"out": out, "rel": rel, "basis": basis}

    def forward(self, p: Any, coordinates: Any, charges: Any, atom_molecule: Any, n_molecules: Any,
                tape: Tape | None = None) -> Any:
        t = self.trace(p, coordinates, charges, atom_molecule, n_molecules)
        if tape is not None:
            for key in ("rel", "basis"):
                tape.put(key, t[key])
        return t["out"]


@keras.saving.register_keras_serializable(package=PACKAGE)
class TensorScaling(keras.layers.Layer):
    """``(a, b) -> (s_iso a, s_aniso b)`` per atom (one constant for the isotropic, one for the traceless part:
    rotations commute with both). Not trained; set from the training labels (:meth:`set_scales`), a.u."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = self.add_weight(name="scale", shape=(2,), initializer="ones", trainable=False)

    def call(self, p: Any) -> Any:
        return p * ops.cast(self.scale, p.dtype)

    def set_scales(self, scales: Sequence[float] | np.ndarray) -> None:
        value = np.broadcast_to(np.asarray(scales, np.float64), (2,))
        if not (np.all(np.isfinite(value)) and np.all(value > 0)):
            raise ValueError(f"{self.name}: tensor scales must be positive, got {scales}")
        self.scale.assign(value.astype(np.float32))


@keras.saving.register_keras_serializable(package=PACKAGE)
class EquivariantTensorHead(keras.layers.Layer):
    """Per-atom MLP -> (a, b) (n_atoms, 2) -> :class:`TensorScaling` -> :class:`ChargeTensor`.

    Same inputs as :class:`~qmlrp.models.vector_head.EquivariantVectorHead`: atom representation
    (n_atoms, d), coordinates (n_atoms, 3) Angstrom, atom features (n_atoms, 21) (for Z), atom_molecule,
    n_molecules. Output (n_molecules, 6) in a.u., ``(xx, yy, zz, xy, xz, yz)``.
    """

    n_outputs = 6

    def __init__(self, hidden_units: Sequence[int] = (64,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.hidden = [SplitDense(u, "relu", name=f"dense{k}") for k, u in enumerate(self.hidden_units)]
        self.scalars = SplitDense(2, "linear", kernel_initializer="zeros", name="scalars")
        self.scaling = TensorScaling(name="tensor_scaling")
        self.tensor = ChargeTensor(name="tensor")

    def build(self, h_shape: Any, *args: Any) -> None:
        d = int(h_shape[-1])
        for layer in self.hidden:
            build_once(layer, (None, d))
            d = layer.units
        build_once(self.scalars, (None, d))

    def forward(self, h: Any, coordinates: Any, atom_features: Any, atom_molecule: Any, n_molecules: Any,
                tape: Tape | None = None, scaled: bool = True) -> Any:
        for layer in self.hidden:
            h = run(tape, layer, h)
        p = run(tape, self.scalars, h)
        if scaled:
            p = run(tape, self.scaling, p)
        return run(tape, self.tensor, p, coordinates, nuclear_charges(atom_features), atom_molecule,
                   n_molecules=n_molecules)

    def call(self, h: Any, coordinates: Any, atom_features: Any, atom_molecule: Any, n_molecules: Any,
             scaled: bool = True) -> Any:
        return self.forward(h, coordinates, atom_features, atom_molecule, n_molecules, scaled=scaled)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_units=self.hidden_units)
        return config

