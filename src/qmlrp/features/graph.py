"""The compact per-molecule Molecular Graph: atom features, bond list, ring membership, coordinates.

Pair features are not stored; :mod:`qmlrp.features.pairs` derives them for any batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rdkit import Chem

from qmlrp.features.atom_features import atom_feature_matrix

BOND_TYPE_CODES: dict[Chem.BondType, int] = {
    Chem.BondType.SINGLE: 0,
    Chem.BondType.DOUBLE: 1,
    Chem.BondType.TRIPLE: 2,
    Chem.BondType.AROMATIC: 3,
}
MAX_RINGS = 63
"""Ring membership is a bit mask in a signed 64-bit integer."""


@dataclass
class MolecularGraph:
    """One featurized molecule.

    Attributes:
        atom_features: (n, 21) float32, see :data:`qmlrp.features.layout.ATOM_FEATURES`.
        bonds: (m, 2) int16 atom indices, i < j.
        bond_types: (m,) int8 codes 0 single, 1 double, 2 triple, 3 aromatic.
        ring_masks: (n,) int64; bit r set when the atom belongs to SSSR ring r.
        coordinates: (n, 3) float32, Angstrom.
    """

    atom_features: np.ndarray
    bonds: np.ndarray
    bond_types: np.ndarray
    ring_masks: np.ndarray
    coordinates: np.ndarray

    @property
    def n_atoms(self) -> int:
        return int(self.atom_features.shape[0])


def graph_from_mol(mol: Chem.Mol, coordinates: np.ndarray, name: str = "molecule") -> MolecularGraph:
    """Featurize a sanitized molecule whose atoms are in the order of ``coordinates`` ((n, 3), Angstrom)."""
    bonds = np.array(
        [sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx())) for b in mol.GetBonds()], dtype=np.int16
    ).reshape(-1, 2)
    bond_types = np.array([BOND_TYPE_CODES[b.GetBondType()] for b in mol.GetBonds()], dtype=np.int8)
    ring_masks = np.zeros(mol.GetNumAtoms(), dtype=np.int64)
    for r, ring in enumerate(mol.GetRingInfo().AtomRings()[:MAX_RINGS]):
        ring_masks[list(ring)] |= np.int64(1) << np.int64(r)
    return MolecularGraph(
        atom_features=atom_feature_matrix(mol, name),
        bonds=bonds,
        bond_types=bond_types,
        ring_masks=ring_masks,
        coordinates=np.asarray(coordinates, dtype=np.float32).reshape(-1, 3),
    )
