"""Names and grouping of the Molecular Graph features (Kearnes et al. 2016; Faber et al. 2017).

Atom features: 21 per atom. Pair features: 13 per unordered atom pair (i < j).
The 12 *feature types* (8 atom + 4 pair) are the units in which relevance is summarised.
"""

from __future__ import annotations

MAX_ATOMS: int = 29
"""Largest QM9 molecule, hydrogens included."""

ELEMENTS: tuple[str, ...] = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS: tuple[int, ...] = (1, 6, 7, 8, 9)
RING_SIZES: tuple[int, ...] = (3, 4, 5, 6, 7, 8)
GRAPH_DISTANCES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7)

ATOM_FEATURES: tuple[str, ...] = (
    *(f"element_{e}" for e in ELEMENTS),          # 0-4   one-hot
    "chirality_R", "chirality_S",                 # 5-6   CIP label from 3D, or neither
    "formal_charge",                              # 7     e
    "gasteiger_charge",                           # 8     e (Gasteiger-Marsili)
    *(f"ring_size_{k}" for k in RING_SIZES),      # 9-14  number of SSSR rings of size k holding the atom
    "hybridization_sp", "hybridization_sp2", "hybridization_sp3",  # 15-17
    "hbond_donor", "hbond_acceptor",              # 18-19
    "aromatic",                                   # 20
)
N_ATOM_FEATURES: int = len(ATOM_FEATURES)  # 21

PAIR_FEATURES: tuple[str, ...] = (
    "bond_single", "bond_double", "bond_triple", "bond_aromatic",  # 0-3 one-hot or all zero
    *(f"graph_distance_le_{d}" for d in GRAPH_DISTANCES),          # 4-10 shortest path <= d bonds
    "same_ring",                                                   # 11
    "distance",                                                    # 12 Euclidean, Angstrom
)
N_PAIR_FEATURES: int = len(PAIR_FEATURES)  # 13

ATOM_FEATURE_TYPES: dict[str, tuple[int, ...]] = {
    "atom type": (0, 1, 2, 3, 4),
    "chirality": (5, 6),
    "formal charge": (7,),
    "partial charge": (8,),
    "ring sizes": (9, 10, 11, 12, 13, 14),
    "hybridization": (15, 16, 17),
    "H-bonding": (18, 19),
    "aromaticity": (20,),
}
PAIR_FEATURE_TYPES: dict[str, tuple[int, ...]] = {
    "bond type": (0, 1, 2, 3),
    "graph distance": (4, 5, 6, 7, 8, 9, 10),
    "same ring": (11,),
    "spatial distance": (12,),
}


def flat_length(max_atoms: int = MAX_ATOMS) -> int:
    """Length of the flattened fixed-size input: 21*29 + 13*C(29,2) = 5887 for QM9."""
    return N_ATOM_FEATURES * max_atoms + N_PAIR_FEATURES * (max_atoms * (max_atoms - 1) // 2)
