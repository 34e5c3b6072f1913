"""Padded dense views of a batch: (B, 29, ...) tensors, and the flat 5887-vector of the autoencoder."""

from __future__ import annotations

import numpy as np

from qmlrp.features.batch import GraphBatch
from qmlrp.features.layout import MAX_ATOMS, N_ATOM_FEATURES, N_PAIR_FEATURES, flat_length
from qmlrp.features.pairs import upper_pairs


def _local_index(batch: GraphBatch) -> np.ndarray:
    """(n_atoms,) index of each atom inside its molecule."""
    starts = np.concatenate([[0], np.cumsum(batch.atoms_per_molecule())[:-1]])
    return np.arange(batch.n_atoms) - starts[batch.atom_molecule]


def to_dense(batch: GraphBatch, max_atoms: int = MAX_ATOMS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded tensors.

    Returns:
        atoms (B, max_atoms, 21) float32; pairs (B, max_atoms, max_atoms, 13) float32, symmetric,
        zero on the diagonal and for padding; atom_mask (B, max_atoms) float32 (1 for real atoms).
    """
    b = batch.n_molecules
    local = _local_index(batch)
    atoms = np.zeros((b, max_atoms, N_ATOM_FEATURES), dtype=np.float32)
    atoms[batch.atom_molecule, local] = batch.atom_features
    mask = np.zeros((b, max_atoms), dtype=np.float32)
    mask[batch.atom_molecule, local] = 1.0
    pairs = np.zeros((b, max_atoms, max_atoms, N_PAIR_FEATURES), dtype=np.float32)
    li, lj = local[batch.pair_atoms[:, 0]], local[batch.pair_atoms[:, 1]]
    pairs[batch.pair_molecule, li, lj] = batch.pair_features
    pairs[batch.pair_molecule, lj, li] = batch.pair_features
    return atoms, pairs, mask


def flatten(batch: GraphBatch, max_atoms: int = MAX_ATOMS) -> np.ndarray:
    """(B, 21*29 + 13*C(29,2)) = (B, 5887) float32: padded atom rows, then pairs i < j row-major."""
    atoms, pairs, _ = to_dense(batch, max_atoms)
    i, j = upper_pairs(max_atoms)
    flat = np.concatenate([atoms.reshape(len(atoms), -1), pairs[:, i, j].reshape(len(atoms), -1)], axis=1)
    assert flat.shape[1] == flat_length(max_atoms)
    return flat
