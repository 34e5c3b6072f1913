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

Optionally (``pair_units``, :class:`BondDipole`) each ordered pair (i -> j) of a molecule adds a bond dipole
along the unit vector ``u_ij = (r_j - r_i) / |r_j - r_i|``, weighted by a per-pair MLP of the first atom's
embedding and the pair's state::

    V_mv += scale_v * sum_{pairs i<j in m} (w_v(h_i, p_ij) - w_v(h_j, p_ij)) u_ij

(the ordered pair j -> i contributes ``w(h_j, p_ij) u_ji = -w(h_j, p_ij) u_ij``): directions a charge model
cannot express (a lone pair, a polar bond at a symmetric charge distribution). Differences of positions make
it origin-free; swapping the atoms of a pair changes nothing; rotating the molecule rotates it. It is linear in
the w's for a fixed geometry, so its LRP split is exact too.

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
class PairEnds(keras.layers.Layer):
    """Weightless: ``(h (n_atoms, d), pair_atoms (n_pairs, 2)) -> (h_i, h_j)``, each (n_pairs, d): the
    representations of each pair's first and second atom."""

    def call(self, h: Any, pair_atoms: Any) -> tuple[Any, Any]:
        return ops.take(h, pair_atoms[:, 0], axis=0), ops.take(h, pair_atoms[:, 1], axis=0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BondDipole(keras.layers.Layer):
    """Weightless: ``(base (n_molecules, 3V), w_ij (n_pairs, V), w_ji (n_pairs, V), coordinates (n_atoms, 3),
    pair_atoms (n_pairs, 2), atom_molecule, n_molecules) -> base + sum_pairs (w_ij - w_ji) u_ij`` (module
    docstring), u_ij the unit vector from a pair's first atom to its second (0 for coincident atoms, e.g.
    padding)."""

    def call(self, base: Any, w_ij: Any, w_ji: Any, coordinates: Any, pair_atoms: Any, atom_molecule: Any,
             n_molecules: Any) -> Any:
        return self.trace(base, w_ij, w_ji, coordinates, pair_atoms, atom_molecule, n_molecules)["out"]

    def trace(self, base: Any, w_ij: Any, w_ji: Any, coordinates: Any, pair_atoms: Any, atom_molecule: Any,
              n_molecules: Any) -> dict[str, Any]:
        """``out`` (n_molecules, 3V) and ``u`` (n_pairs, 3), the pairs' unit vectors."""
        coords = ops.cast(coordinates, w_ij.dtype)
        d = ops.take(coords, pair_atoms[:, 1], axis=0) - ops.take(coords, pair_atoms[:, 0], axis=0)
        norm = ops.sqrt(ops.sum(d * d, axis=-1, keepdims=True))
        u = d / ops.where(norm > 0, norm, ops.ones_like(norm))
        per_pair = (w_ij - w_ji)[:, :, None] * u[:, None, :]  # (n_pairs, V, 3)
        n_vec = ops.shape(w_ij)[-1]
        owner = ops.take(atom_molecule, pair_atoms[:, 0], axis=0)
        bonds = ops.segment_sum(ops.reshape(per_pair, (-1, n_vec * 3)), owner, num_segments=n_molecules)
        return {"out": base + bonds, "u": u}

    def forward(self, base: Any, w_ij: Any, w_ji: Any, coordinates: Any, pair_atoms: Any, atom_molecule: Any,
                n_molecules: Any, tape: Tape | None = None) -> Any:
        t = self.trace(base, w_ij, w_ji, coordinates, pair_atoms, atom_molecule, n_molecules)
        if tape is not None:
            tape.put("u", t["u"])
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
    """Per-atom MLP -> q (n_atoms, V) -> :class:`ChargeDipole` [-> :class:`BondDipole`] -> :class:`VectorScaling`.

    Args:
        hidden_units: widths of the per-atom ReLU layers between the atom embedding and q.
        n_vectors: vectors predicted (2: mu, beta_vec).
        pair_units: widths of the per-pair ReLU layers on ``[h_i, p_ij]`` before the bond weights (module
            docstring); empty = no bond dipoles (the charge model).
        pair_dim: width of the pair states ``p`` (the trunk's; needed only with ``pair_units``).
    Input: atom representation (n_atoms, d), coordinates (n_atoms, 3) Angstrom, atom features
    (n_atoms, 21) (for Z), atom_molecule, n_molecules; with ``pair_units`` also the pair states
    (n_pairs, pair_dim) and pair_atoms (n_pairs, 2). Output (n_molecules, 3 V) in a.u.
    """

    def __init__(self, hidden_units: Sequence[int] = (64,), n_vectors: int = 2, pair_units: Sequence[int] = (),
                 pair_dim: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden_units = [int(u) for u in hidden_units]
        self.n_vectors = int(n_vectors)
        self.pair_units = [int(u) for u in pair_units]
        self.pair_dim = int(pair_dim)
        self.hidden = [SplitDense(u, "relu", name=f"dense{k}") for k, u in enumerate(self.hidden_units)]
        self.charges = SplitDense(self.n_vectors, "linear", kernel_initializer="zeros", name="charges")
        self.dipole = ChargeDipole(name="dipole")
        if self.pair_units:
            self.pair_ends = PairEnds(name="pair_ends")
            self.pair_hidden = [SplitDense(u, "relu", name=f"pair_dense{k}") for k, u in enumerate(self.pair_units)]
            self.bond_weights = SplitDense(self.n_vectors, "linear", kernel_initializer="zeros", name="bond_weights")
            self.bond_dipole = BondDipole(name="bond_dipole")
        self.scaling = VectorScaling(self.n_vectors, name="vector_scaling")

    @property
    def uses_pairs(self) -> bool:
        """Whether the head reads the pair states (bond dipoles)."""
        return bool(self.pair_units)

    @property
    def n_outputs(self) -> int:
        """Output width: 3 per vector."""
        return 3 * self.n_vectors

    def build(self, h_shape: Any, *args: Any) -> None:
        d = int(h_shape[-1])
        width = d
        for layer in self.hidden:
            build_once(layer, (None, width))
            width = layer.units
        build_once(self.charges, (None, width))
        if self.pair_units:
            shapes: Any = [(None, d), (None, self.pair_dim)]
            for layer in self.pair_hidden:
                build_once(layer, shapes)
                shapes = (None, layer.units)
            build_once(self.bond_weights, shapes)

    def forward(self, h: Any, coordinates: Any, atom_features: Any, atom_molecule: Any, pairs: Any = None,
                pair_atoms: Any = None, n_molecules: Any = None, tape: Tape | None = None, scaled: bool = True) -> Any:
        """``pairs``/``pair_atoms`` come positionally (the walk hands relevance to positional inputs)."""
        x = h
        for layer in self.hidden:
            x = run(tape, layer, x)
        q = run(tape, self.charges, x)
        z = run(tape, self.dipole, q, coordinates, nuclear_charges(atom_features), atom_molecule,
                n_molecules=n_molecules)
        if self.pair_units:
            if pairs is None or pair_atoms is None:
                raise ValueError(f"{self.name}: the bond dipoles need the pair states and pair_atoms")
            h_i, h_j = run(tape, self.pair_ends, h, pair_atoms)
            y_ij: Any = [h_i, pairs]
            y_ji: Any = [h_j, pairs]
            for layer in self.pair_hidden:
                y_ij, y_ji = run(tape, layer, y_ij), run(tape, layer, y_ji)
            w_ij, w_ji = run(tape, self.bond_weights, y_ij), run(tape, self.bond_weights, y_ji)
            z = run(tape, self.bond_dipole, z, w_ij, w_ji, coordinates, pair_atoms, atom_molecule,
                    n_molecules=n_molecules)
        return run(tape, self.scaling, z) if scaled else z

    def call(self, h: Any, coordinates: Any, atom_features: Any, atom_molecule: Any, pairs: Any = None,
             pair_atoms: Any = None, n_molecules: Any = None, scaled: bool = True) -> Any:
        return self.forward(h, coordinates, atom_features, atom_molecule, pairs, pair_atoms, n_molecules=n_molecules,
                            scaled=scaled)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden_units=self.hidden_units, n_vectors=self.n_vectors, pair_units=self.pair_units,
                      pair_dim=self.pair_dim)
        return config
