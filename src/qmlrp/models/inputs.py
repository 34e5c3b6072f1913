"""Model inputs: a :class:`GraphBatch` as a dict of flat arrays, and the input layer.

Input dict (all leading dimensions ragged, nothing padded):

* ``atom_features`` (n_atoms, 21) float32
* ``pair_features`` (n_pairs, 13) float32, unordered pairs i < j; column 12 is a distance in Angstrom
* ``pair_atoms`` (n_pairs, 2) int32, batch-global atom indices
* ``atom_molecule`` (n_atoms,) int32, molecule index of each atom
* ``molecule_atoms`` (n_molecules,) int32, atom count of each molecule (its length fixes the
  number of molecules in the batch, so even the segment sums have a shape the backend can see)

For compilers that want static shapes (XLA, JAX), :func:`pad_inputs` rounds the atom and pair
counts up to buckets: padding atoms belong to an extra, zero-weight molecule slot, padding pairs
join a padding atom to itself, and the optional ``atom_mask`` (n_atoms,) float32 (1 real, 0 padding)
keeps padding out of the BatchNorm statistics. Real molecules' outputs are unchanged.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from qmlrp.features.batch import GraphBatch
from qmlrp.features.layout import (
    ATOM_FEATURES,
    ATOMIC_NUMBERS,
    N_ATOM_FEATURES,
    N_PAIR_FEATURES,
    PAIR_FEATURES,
)
from qmlrp.models.layers import PACKAGE, FeatureScaling, Tape, run

ATOM_FEATURES_KEY = "atom_features"
PAIR_FEATURES_KEY = "pair_features"
PAIR_ATOMS_KEY = "pair_atoms"
ATOM_MOLECULE_KEY = "atom_molecule"
MOLECULE_ATOMS_KEY = "molecule_atoms"
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    ATOM_FEATURES_KEY: (N_ATOM_FEATURES,),
    PAIR_FEATURES_KEY: (N_PAIR_FEATURES,),
    PAIR_ATOMS_KEY: (2,),
    ATOM_MOLECULE_KEY: (),
    MOLECULE_ATOMS_KEY: (),
}
INPUT_DTYPES: dict[str, str] = {
    ATOM_FEATURES_KEY: "float32",
    PAIR_FEATURES_KEY: "float32",
    PAIR_ATOMS_KEY: "int32",
    ATOM_MOLECULE_KEY: "int32",
    MOLECULE_ATOMS_KEY: "int32",
}
ATOM_MASK_KEY = "atom_mask"
COORDINATES_KEY = "coordinates"
"""Optional input of models that need geometry (the equivariant vector head,
:mod:`qmlrp.models.equivariant`): (n_atoms, 3) float32, Angstrom. Other models ignore it."""
"""Optional input of padded batches: (n_atoms,) float32, 1 for real atoms, 0 for padding."""
PADDED_INPUT_SHAPES: dict[str, tuple[int, ...]] = {**INPUT_SHAPES, ATOM_MASK_KEY: ()}
PADDED_INPUT_DTYPES: dict[str, str] = {**INPUT_DTYPES, ATOM_MASK_KEY: "float32"}


def batch_to_inputs(batch: GraphBatch) -> dict[str, np.ndarray]:
    """The model's input dict for a ragged batch (no copies where dtypes already match)."""
    return {
        ATOM_FEATURES_KEY: np.asarray(batch.atom_features, dtype=np.float32),
        PAIR_FEATURES_KEY: np.asarray(batch.pair_features, dtype=np.float32),
        PAIR_ATOMS_KEY: np.asarray(batch.pair_atoms, dtype=np.int32),
        ATOM_MOLECULE_KEY: np.asarray(batch.atom_molecule, dtype=np.int32),
        MOLECULE_ATOMS_KEY: batch.atoms_per_molecule(),
    }


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_inputs(
    inputs: dict[str, np.ndarray],
    y: np.ndarray,
    molecule_slots: int,
    atom_multiple: int,
    pair_multiple: int,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Pad a ragged input dict to bucketed sizes; returns ``(inputs, y, sample_weight)``.

    Args:
        inputs: from :func:`batch_to_inputs` (n molecules).
        y: (n, 1) targets.
        molecule_slots: fixed number of molecule rows, > n (the last slot holds the padding atoms).
        atom_multiple, pair_multiple: atoms are padded to a multiple of ``atom_multiple`` with at
            least one padding atom; pairs to a multiple of ``pair_multiple``.

    Returns:
        Padded inputs (with ``atom_mask``), y (molecule_slots, 1) and sample weights
        (molecule_slots,) that are 1 for the real molecules and 0 for the padding slots.
    """
    n_mol = int(inputs[MOLECULE_ATOMS_KEY].shape[0])
    n_atoms = int(inputs[ATOM_FEATURES_KEY].shape[0])
    n_pairs = int(inputs[PAIR_FEATURES_KEY].shape[0])
    if molecule_slots <= n_mol:
        raise ValueError(f"molecule_slots ({molecule_slots}) must exceed the batch's {n_mol} molecules")
    atoms_to = _round_up(n_atoms + 1, atom_multiple)
    pairs_to = _round_up(max(n_pairs, 1), pair_multiple)
    pad_atom = atoms_to - 1
    sink = molecule_slots - 1
    out = {
        ATOM_FEATURES_KEY: np.zeros((atoms_to, N_ATOM_FEATURES), np.float32),
        PAIR_FEATURES_KEY: np.zeros((pairs_to, N_PAIR_FEATURES), np.float32),
        PAIR_ATOMS_KEY: np.full((pairs_to, 2), pad_atom, np.int32),
        ATOM_MOLECULE_KEY: np.full(atoms_to, sink, np.int32),
        MOLECULE_ATOMS_KEY: np.zeros(molecule_slots, np.int32),
        ATOM_MASK_KEY: np.zeros(atoms_to, np.float32),
    }
    out[ATOM_FEATURES_KEY][:n_atoms] = inputs[ATOM_FEATURES_KEY]
    out[PAIR_FEATURES_KEY][:n_pairs] = inputs[PAIR_FEATURES_KEY]
    out[PAIR_ATOMS_KEY][:n_pairs] = inputs[PAIR_ATOMS_KEY]
    out[ATOM_MOLECULE_KEY][:n_atoms] = inputs[ATOM_MOLECULE_KEY]
    out[MOLECULE_ATOMS_KEY][:n_mol] = inputs[MOLECULE_ATOMS_KEY]
    out[MOLECULE_ATOMS_KEY][sink] += atoms_to - n_atoms
    out[ATOM_MASK_KEY][:n_atoms] = 1.0
    if COORDINATES_KEY in inputs:  # padding atoms sit at the origin, in the sink molecule
        out[COORDINATES_KEY] = np.zeros((atoms_to, 3), np.float32)
        out[COORDINATES_KEY][:n_atoms] = inputs[COORDINATES_KEY]
    y = np.asarray(y, np.float32).reshape(n_mol, -1)
    y_out = np.zeros((molecule_slots, y.shape[1]), np.float32)
    y_out[:n_mol] = y
    weight = np.zeros(molecule_slots, np.float32)
    weight[:n_mol] = 1.0
    return out, y_out, weight


def all_pairs(atom_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch-global ``(pair_atoms (n_pairs, 2), pair_molecule (n_pairs,))`` for all i < j."""
    offsets = np.concatenate([[0], np.cumsum(atom_counts)[:-1]])
    blocks, owners = [], []
    for m, (n, off) in enumerate(zip(atom_counts, offsets)):
        i, j = np.triu_indices(int(n), k=1)
        blocks.append(np.stack([i, j], axis=1) + off)
        owners.append(np.full(i.shape[0], m))
    return (
        np.concatenate(blocks).astype(np.int32) if blocks else np.zeros((0, 2), np.int32),
        np.concatenate(owners).astype(np.int32) if owners else np.zeros(0, np.int32),
    )


def random_batch(atom_counts: np.ndarray | list[int], seed: int = 0) -> GraphBatch:
    """A synthetic :class:`GraphBatch` with plausible feature statistics (tests, benchmarks).

    Atoms get a one-hot element (mostly H/C), random binary flags and a Gaussian partial charge;
    pairs get random 3D positions' distances (Angstrom), a one-hot bond type for close pairs and
    graph-distance flags derived from the spatial distance.
    """
    rng = np.random.default_rng(seed)
    counts = np.asarray(atom_counts, dtype=np.int32)
    n_atoms = int(counts.sum())
    atom_molecule = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
    atoms = np.zeros((n_atoms, N_ATOM_FEATURES), np.float32)
    element = rng.choice(len(ATOMIC_NUMBERS), size=n_atoms, p=[0.5, 0.35, 0.06, 0.07, 0.02])
    atoms[np.arange(n_atoms), element] = 1.0
    charge = ATOM_FEATURES.index("gasteiger_charge")
    binary = [k for k in range(len(ATOMIC_NUMBERS), N_ATOM_FEATURES) if k != charge]
    atoms[:, binary] = (rng.random((n_atoms, len(binary))) < 0.2).astype(np.float32)
    atoms[:, ATOM_FEATURES.index("formal_charge")] = 0.0
    atoms[:, charge] = rng.normal(0.0, 0.2, n_atoms).astype(np.float32)

    xyz = rng.normal(0.0, 1.6, (n_atoms, 3))
    pair_atoms, pair_molecule = all_pairs(counts)
    dist = np.linalg.norm(xyz[pair_atoms[:, 0]] - xyz[pair_atoms[:, 1]], axis=1)
    pairs = np.zeros((pair_atoms.shape[0], N_PAIR_FEATURES), np.float32)
    bonded = dist < 1.6
    pairs[bonded, rng.integers(0, 4, int(bonded.sum()))] = 1.0
    first_gd = PAIR_FEATURES.index("graph_distance_le_1")
    for k in range(7):
        pairs[:, first_gd + k] = (dist < 1.6 * (k + 1)).astype(np.float32)
    pairs[:, PAIR_FEATURES.index("same_ring")] = (rng.random(dist.size) < 0.1).astype(np.float32)
    pairs[:, PAIR_FEATURES.index("distance")] = dist.astype(np.float32)
    return GraphBatch(
        atom_features=atoms,
        pair_features=pairs,
        pair_atoms=pair_atoms,
        atom_molecule=atom_molecule,
        pair_molecule=pair_molecule,
        ids=np.arange(counts.size, dtype=np.int64),
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class GraphInput(keras.layers.Layer):
    """Input layer: raw input dict -> (scaled atom features, scaled pair features).

    Only the continuous features listed in ``scaled_atom_features`` / ``scaled_pair_features``
    are divided by their training-set standard deviation (see :meth:`adapt`); one-hot and count
    features pass unchanged. Another input layer with the same call contract (dict in,
    ``(atoms (n_atoms, d_a), pairs (n_pairs, d_p))`` out) can replace this one.
    """

    def __init__(
        self,
        scaled_atom_features: tuple[str, ...] = ("gasteiger_charge",),
        scaled_pair_features: tuple[str, ...] = ("distance",),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unknown = [f for f in scaled_atom_features if f not in ATOM_FEATURES] + [
            f for f in scaled_pair_features if f not in PAIR_FEATURES
        ]
        if unknown:
            raise ValueError(f"unknown feature names to scale: {unknown}")
        self.scaled_atom_features = tuple(scaled_atom_features)
        self.scaled_pair_features = tuple(scaled_pair_features)
        self.atom_scaling = FeatureScaling(N_ATOM_FEATURES, name="atom_scaling")
        self.pair_scaling = FeatureScaling(N_PAIR_FEATURES, name="pair_scaling")

    @property
    def atom_dim(self) -> int:
        return N_ATOM_FEATURES

    @property
    def pair_dim(self) -> int:
        return N_PAIR_FEATURES

    def adapt(self, atom_features: np.ndarray, pair_features: np.ndarray) -> None:
        """Set the scales from training-set arrays (n_atoms, 21) and (n_pairs, 13)."""
        self.atom_scaling.adapt_from(atom_features, [ATOM_FEATURES.index(f) for f in self.scaled_atom_features])
        self.pair_scaling.adapt_from(pair_features, [PAIR_FEATURES.index(f) for f in self.scaled_pair_features])

    def build(self, inputs_shape: Any = None) -> None:
        """Nothing to build: the scales are created in ``__init__``."""

    def forward(self, inputs: dict[str, Any], tape: Tape | None = None) -> tuple[Any, Any]:
        """``(atoms (n_atoms, 21), pairs (n_pairs, 13))`` scaled; recorded on ``tape``."""
        return (run(tape, self.atom_scaling, inputs[ATOM_FEATURES_KEY]),
                run(tape, self.pair_scaling, inputs[PAIR_FEATURES_KEY]))

    def call(self, inputs: dict[str, Any]) -> tuple[Any, Any]:
        return self.forward(inputs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            scaled_atom_features=list(self.scaled_atom_features),
            scaled_pair_features=list(self.scaled_pair_features),
        )
        return config


def molecule_inputs(store: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
    """The vector model's input dict for store ``positions`` (the GC inputs + ``coordinates``, Angstrom)."""
    inputs = batch_to_inputs(store.batch(positions))
    inputs[COORDINATES_KEY] = store.atom_coordinates(positions)
    return inputs
