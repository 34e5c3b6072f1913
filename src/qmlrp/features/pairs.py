"""Pair features derived on the fly, vectorised over a whole batch of molecules.

For every unordered pair i < j of every molecule: bond type one-hot (4), shortest path <= d bonds for
d = 1..7 (7), same SSSR ring (1), Euclidean distance in Angstrom (1). Graph distances come from
boolean powers of the padded adjacency matrices (at most 29 x 29), so a batch costs a few small matmuls.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from qmlrp.features.batch import GraphBatch
from qmlrp.features.graph import MolecularGraph
from qmlrp.features.layout import GRAPH_DISTANCES, N_PAIR_FEATURES


@lru_cache(maxsize=64)
def upper_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Local indices (i, j), i < j, of all unordered pairs of ``n`` atoms, row-major order."""
    i, j = np.triu_indices(n, k=1)
    return i.astype(np.int32), j.astype(np.int32)


def expand_pairs(
    n_atoms: np.ndarray,
    coordinates: np.ndarray,
    ring_masks: np.ndarray,
    bond_molecule: np.ndarray,
    bond_local: np.ndarray,
    bond_types: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair features for a batch given as flat arrays.

    Args:
        n_atoms: (B,) atoms per molecule.
        coordinates: (sum n, 3) Angstrom, molecules stacked.
        ring_masks: (sum n,) int64 ring bit masks.
        bond_molecule: (M,) molecule index of each bond.
        bond_local: (M, 2) local atom indices of each bond.
        bond_types: (M,) codes 0..3.

    Returns:
        pair_features (P, 13) float32, pair_atoms (P, 2) int32 batch-global indices, pair_molecule (P,) int32.
    """
    n_atoms = np.asarray(n_atoms, dtype=np.int64)
    n_mol = len(n_atoms)
    size = int(n_atoms.max()) if n_mol else 0
    offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]]).astype(np.int64)
    locals_ = [upper_pairs(int(n)) for n in n_atoms]
    counts = np.array([len(li) for li, _ in locals_], dtype=np.int64)
    li = np.concatenate([p[0] for p in locals_]) if n_mol else np.zeros(0, np.int32)
    lj = np.concatenate([p[1] for p in locals_]) if n_mol else np.zeros(0, np.int32)
    pair_molecule = np.repeat(np.arange(n_mol, dtype=np.int32), counts)
    gi = li + offsets[pair_molecule]
    gj = lj + offsets[pair_molecule]

    features = np.zeros((len(li), N_PAIR_FEATURES), dtype=np.float32)
    # one flat index into the (n_mol, size, size) per-molecule matrices serves every gather below
    flat = (pair_molecule.astype(np.int64) * size + li) * size + lj
    bond_code = np.full((n_mol, size, size), -1, dtype=np.int8)
    bond_code[bond_molecule, bond_local[:, 0], bond_local[:, 1]] = bond_types
    code = bond_code.reshape(-1)[flat]
    bonded = code >= 0
    features[np.nonzero(bonded)[0], code[bonded]] = 1.0

    # hops[m, i, j]: the smallest d in GRAPH_DISTANCES with j reachable from i in d bonds (else a
    # sentinel past the last), from boolean powers of (adjacency + I); the pairs' columns
    # "graph distance <= d" are then one gather and a comparison
    adjacency = np.zeros((n_mol, size, size), dtype=np.float32)
    adjacency[bond_molecule, bond_local[:, 0], bond_local[:, 1]] = 1.0
    adjacency[bond_molecule, bond_local[:, 1], bond_local[:, 0]] = 1.0
    step = adjacency + np.eye(size, dtype=np.float32)
    reach = adjacency > 0
    hops = np.zeros((n_mol, size, size), dtype=np.int8)  # reach only grows: count the columns not reached
    for column, _d in enumerate(GRAPH_DISTANCES):
        if column:
            reach = (reach.astype(np.float32) @ step) > 0
        hops += ~reach
    pair_hops = hops.reshape(-1)[flat]
    features[:, 4:4 + len(GRAPH_DISTANCES)] = pair_hops[:, None] <= np.arange(len(GRAPH_DISTANCES), dtype=np.int8)

    features[:, 11] = (ring_masks[gi] & ring_masks[gj]) != 0
    d = coordinates[gi] - coordinates[gj]
    features[:, 12] = np.sqrt(np.add.reduce(d * d, axis=1))  # np.linalg.norm(d, axis=1), without its copies
    return features, np.stack([gi, gj], axis=1).astype(np.int32), pair_molecule


def make_batch(graphs: Sequence[MolecularGraph], ids: np.ndarray) -> GraphBatch:
    """Ragged :class:`GraphBatch` from featurized molecules (e.g. for ad-hoc inputs to ``predict``)."""
    n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int64)
    n_bonds = np.array([len(g.bonds) for g in graphs], dtype=np.int64)
    atom_molecule = np.repeat(np.arange(len(graphs), dtype=np.int32), n_atoms)
    bond_molecule = np.repeat(np.arange(len(graphs), dtype=np.int32), n_bonds)
    stack = lambda arrays, width: np.concatenate(arrays) if arrays else np.zeros((0, width))  # noqa: E731
    pair_features, pair_atoms, pair_molecule = expand_pairs(
        n_atoms,
        stack([g.coordinates for g in graphs], 3).reshape(-1, 3),
        np.concatenate([g.ring_masks for g in graphs]).astype(np.int64),
        bond_molecule,
        stack([g.bonds for g in graphs], 2).reshape(-1, 2).astype(np.int64),
        np.concatenate([g.bond_types for g in graphs]).astype(np.int8),
    )
    return GraphBatch(
        atom_features=np.concatenate([g.atom_features for g in graphs]).astype(np.float32),
        pair_features=pair_features,
        pair_atoms=pair_atoms,
        atom_molecule=atom_molecule,
        pair_molecule=pair_molecule,
        ids=np.asarray(ids, dtype=np.int64),
    )
