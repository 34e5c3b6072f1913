"""Equivariant vector readout: per-atom scalars times atom positions, summed per molecule.

For each molecule m and each predicted vector v (e.g. the dipole mu and beta_vec)::

    q_av   = MLP(h_a)_v                          per-atom scalar from the atom embedding h_a
    s_av   = q_av - mean_{b in m} q_bv          zero sum per molecule ("charges" of a neutral molecule)
    V_mv   = scale_v * sum_{a in m} s_av (r_a - c_m)     (3,) in the vector's units (a.u.)

with ``r_a`` the atom position (Angstrom, the frame of the input coordinates) and ``c_m`` the
molecule's centre of nuclear charge. Because the s sum to zero, ``V`` does not depend on ``c`` (nor
on any origin): translating the molecule leaves ``V`` unchanged, rotating it rotates ``V``, and
permuting its atoms changes nothing (the q depend on the graph only, which is rotation-, translation-
and permutation-invariant). ``c`` only keeps the float32 sums small.

Since ``sum_a s_a (r_a - c) = sum_a q_a (r_a - rbar)`` (``rbar`` the mean atom position), ``V`` is
*linear* in the raw q with coefficients ``scale * (r_a - rbar)``: for a fixed output functional
(e.g. beta_par = 3/5 beta_vec . mu_hat with mu_hat held fixed) the per-atom contributions
``q_a (r_a - rbar) . c`` are exact and sum to the output; this is the LRP rule of
:class:`ChargeDipole` (:mod:`qmlrp.relevance.layer_rules`).

Output layout: (n_molecules, 3 * n_vectors), vector-major ``[v0_x, v0_y, v0_z, v1_x, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from qmlrp.features.layout import ATOMIC_NUMBERS
from qmlrp.models.layers import PACKAGE, SplitDense, Tape, build_once, run


def nuclear_charges(atom_features: Any) -> Any:
    """(n_atoms,) nuclear charge Z from the element one-hot columns of the atom features
    (n_atoms, 21) (padding atoms, all zeros, get Z = 0)."""
    z = np.asarray(ATOMIC_NUMBERS, np.float32)
    onehot = atom_features[:, : len(ATOMIC_NUMBERS)]
    return ops.sum(onehot * ops.cast(z, onehot.dtype), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ChargeDipole(keras.layers.Layer):
    """Weightless: ``(q (n_atoms, V), coordinates (n_atoms, 3) Angstrom, Z (n_atoms,), atom_molecule,
    n_molecules) -> (n_molecules, 3 V)``, ``V_mv = sum_a (q_av - qbar_mv) (r_a - c_m)`` with ``c_m``
    the centre of nuclear charge (the mean position where a molecule's Z sum to 0, e.g. padding)."""

    def call(self, q: Any, coordinates: Any, charges: Any, atom_molecule: Any, n_molecules: Any) -> Any:
        return self.trace(q, coordinates, charges, atom_molecule, n_molecules)["out"]

    def trace(self, q: Any, coordinates: Any, charges: Any, atom_molecule: Any, n_molecules: Any) -> dict[str, Any]:
        """``out`` (n_mol, 3V); ``s`` (n_atoms, V) the zero-sum scalars; ``rel`` (n_atoms, 3) r_a - c_m;
        ``g`` (n_atoms, 3) r_a - rbar_m (the coefficients of the raw q)."""
        coords = ops.cast(coordinates, q.dtype)
        charges = ops.cast(charges, q.dtype)
        ones = ops.ones_like(charges)
        count = ops.segment_sum(ones, atom_molecule, num_segments=n_molecules)
        count = ops.maximum(count, 1.0)
        q_mean = ops.segment_sum(q, atom_molecule, num_segments=n_molecules) / count[:, None]
        s = q - ops.take(q_mean, atom_molecule, axis=0)
        z_sum = ops.segment_sum(charges, atom_molecule, num_segments=n_molecules)
        zr = ops.segment_sum(coords * charges[:, None], atom_molecule, num_segments=n_molecules)
        r_mean = ops.segment_sum(coords, atom_molecule, num_segments=n_molecules) / count[:, None]
        safe = ops.where(z_sum > 0, z_sum, ops.ones_like(z_sum))
        centre = ops.where((z_sum > 0)[:, None], zr / safe[:, None], r_mean)
        rel = coords - ops.take(centre, atom_molecule, axis=0)
        g = coords - ops.take(r_mean, atom_molecule, axis=0)
        per_atom = s[:, :, None] * rel[:, None, :]  # (n_atoms, V, 3)
        n_vec = ops.shape(q)[-1]
        flat = ops.reshape(per_atom, (-1, n_vec * 3))
        out = ops.segment_sum(flat, atom_molecule, num_segments=n_molecules)
        return {"out": out, "s": s, "rel": rel, "g": g}

    def forward(self, q: Any, coordinates: Any, charges: Any, atom_molecule: Any, n_molecules: Any,
                tape: Tape | None = None) -> Any:
        t = self.trace(q, coordinates, charges, atom_molecule, n_molecules)
        if tape is not None:
            for key in ("s", "rel", "g"):
                tape.put(key, t[key])
        return t["out"]


@keras.saving.register_keras_serializable(package=PACKAGE)
class VectorScaling(keras.layers.Layer):
    """``y = z * scale_v`` per vector (one constant per vector, same for its 3 components, so
    rotations commute with it; no mean: a mean vector would break equivariance). Not trained;
    set from the training labels' root-mean-square component (:meth:`set_scales`), in a.u."""

    def __init__(self, n_vectors: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_vectors = int(n_vectors)
        self.scale = self.add_weight(name="scale", shape=(self.n_vectors,), initializer="ones", trainable=False)

    def call(self, z: Any) -> Any:
        return z * ops.repeat(ops.cast(self.scale, z.dtype), 3)

    def set_scales(self, scales: Sequence[float] | np.ndarray) -> None:
        value = np.broadcast_to(np.asarray(scales, np.float64), (self.n_vectors,))
        if not (np.all(np.isfinite(value)) and np.all(value > 0)):
            raise ValueError(f"{self.name}: vector scales must be positive, got {scales}")
        self.scale.assign(value.astype(np.float32))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(n_vectors=self.n_vectors)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class EquivariantVectorHead(keras.layers.Layer):
    """Per-atom MLP -> q (n_atoms, V) -> :class:`ChargeDipole` -> :class:`VectorScaling`.

    Args:
        hidden_units: widths of the per-atom ReLU layers between the atom embedding and q.
        n_vectors: vectors predicted (2: mu, beta_vec).
    Input: atom representation (n_atoms, d), coordinates (n_atoms, 3) Angstrom, atom features
    (n_atoms, 21) (for Z), atom_molecule, n_molecules. Output (n_molecules, 3 V) in a.u.
    """

    def __init__(self, hidden_units: Sequence[int] = (64,), n_vectors: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.n_vectors = int(n_vectors)
        self.hidden = [SplitDense(u, "relu", name=f"dense{k}") for k, u in enumerate(self.hidden_units)]
        self.charges = SplitDense(self.n_vectors, "linear", kernel_initializer="zeros", name="charges")
        self.dipole = ChargeDipole(name="dipole")
        self.scaling = VectorScaling(self.n_vectors, name="vector_scaling")

    @property
    def n_outputs(self) -> int:
        """Output width: 3 per vector."""
        return 3 * self.n_vectors

    def build(self, h_shape: Any, *args: Any) -> None:
        d = int(h_shape[-1])
        for layer in self.hidden:
            build_once(layer, (None, d))
            d = layer.units
        build_once(self.charges, (None, d))

    def forward(self, h: Any, coordinates: Any, atom_features: Any, atom_molecule: Any, n_molecules: Any,
                tape: Tape | None = None, scaled: bool = True) -> Any:
        for layer in self.hidden:
            h = run(tape, layer, h)
        q = run(tape, self.charges, h)
        z = run(tape, self.dipole, q, coordinates, nuclear_charges(atom_features), atom_molecule,
                n_molecules=n_molecules)
        return run(tape, self.scaling, z) if scaled else z

    def call(self, h: Any, coordinates: Any, atom_features: Any, atom_molecule: Any, n_molecules: Any,
             scaled: bool = True) -> Any:
        return self.forward(h, coordinates, atom_features, atom_molecule, n_molecules, scaled=scaled)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, n_vectors=self.n_vectors)
        return config
