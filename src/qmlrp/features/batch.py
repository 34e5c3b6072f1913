"""The ragged batch that models consume: only real atoms and real pairs, no padding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GraphBatch:
    """A batch of molecules as flat (ragged) arrays.

    Attributes:
        atom_features: (n_atoms, 21) float32, atoms of all molecules stacked in molecule order.
        pair_features: (n_pairs, 13) float32, one row per unordered pair i < j of each molecule.
        pair_atoms: (n_pairs, 2) int32, batch-global atom indices (i, j) of each pair, i < j.
        atom_molecule: (n_atoms,) int32, molecule index (0..n_molecules-1) of each atom.
        pair_molecule: (n_pairs,) int32, molecule index of each pair.
        ids: (n_molecules,) int64 QM9 indices (or positions for ad-hoc inputs).
    """

    atom_features: np.ndarray
    pair_features: np.ndarray
    pair_atoms: np.ndarray
    atom_molecule: np.ndarray
    pair_molecule: np.ndarray
    ids: np.ndarray

    @property
    def n_molecules(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.atom_features.shape[0])

    @property
    def n_pairs(self) -> int:
        return int(self.pair_features.shape[0])

    def atoms_per_molecule(self) -> np.ndarray:
        """(n_molecules,) int32 atom counts."""
        return np.bincount(self.atom_molecule, minlength=self.n_molecules).astype(np.int32)
