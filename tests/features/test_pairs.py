"""Hand-checked pair features, and agreement of the vectorised batch path with a per-pair reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from rdkit import Chem

from qmlrp.features.layout import PAIR_FEATURES
from qmlrp.features.pairs import make_batch
from tests.conftest import positions_of

COL = {name: k for k, name in enumerate(PAIR_FEATURES)}
DIST = [COL[f"graph_distance_le_{d}"] for d in range(1, 8)]


def pair_row(batch, i: int, j: int) -> np.ndarray:
    i, j = min(i, j), max(i, j)
    hit = np.nonzero((batch.pair_atoms[:, 0] == i) & (batch.pair_atoms[:, 1] == j))[0]
    assert len(hit) == 1
    return batch.pair_features[hit[0]]


def test_methane_pairs(qm9_graph):
    rec, graph, _ = qm9_graph(1)
    batch = make_batch([graph], np.array([1]))
    assert batch.n_pairs == 10  # C(5, 2)
    c = positions_of(rec.atomic_numbers, 6)[0]
    h1, h2 = positions_of(rec.atomic_numbers, 1)[:2]
    ch = pair_row(batch, c, h1)
    assert ch[COL["bond_single"]] == 1 and ch[[COL["bond_double"], COL["bond_triple"], COL["bond_aromatic"]]].sum() == 0
    assert np.all(ch[DIST] == 1)
    assert ch[COL["distance"]] == pytest.approx(np.linalg.norm(rec.coordinates[c] - rec.coordinates[h1]), abs=1e-5)
    assert ch[COL["distance"]] == pytest.approx(1.092, abs=0.002)
    hh = pair_row(batch, h1, h2)
    assert hh[:4].sum() == 0 and hh[DIST[0]] == 0 and np.all(hh[DIST[1:]] == 1)
    assert hh[COL["same_ring"]] == 0
    assert hh[COL["distance"]] == pytest.approx(1.092 * np.sqrt(8 / 3), abs=0.005)  # tetrahedral H-H


def test_benzene_pairs(qm9_graph):
    rec, graph, mol = qm9_graph(214)
    batch = make_batch([graph], np.array([214]))
    cs = positions_of(rec.atomic_numbers, 6)
    ring = list(Chem.GetSymmSSSR(mol)[0])
    a, b, para = ring[0], ring[1], ring[3]
    assert pair_row(batch, a, b)[COL["bond_aromatic"]] == 1
    p = pair_row(batch, a, para)
    assert p[:4].sum() == 0
    assert p[DIST].tolist() == [0, 0, 1, 1, 1, 1, 1]  # para carbons: 3 bonds apart
    assert p[COL["same_ring"]] == 1
    assert p[COL["distance"]] == pytest.approx(2.79, abs=0.02)
    h = [n.GetIdx() for n in mol.GetAtomWithIdx(a).GetNeighbors() if n.GetAtomicNum() == 1][0]
    assert pair_row(batch, a, h)[COL["same_ring"]] == 0 and len(cs) == 6


def test_bicyclic_same_ring(qm9_graph):
    rec, graph, mol = qm9_graph(662)  # C1CC2CCC12: two fused 4-rings
    batch = make_batch([graph], np.array([662]))
    cs = positions_of(rec.atomic_numbers, 6)
    rings = [set(r) for r in mol.GetRingInfo().AtomRings()]
    only_a = [c for c in cs if c in rings[0] and c not in rings[1]]
    only_b = [c for c in cs if c in rings[1] and c not in rings[0]]
    assert pair_row(batch, only_a[0], only_b[0])[COL["same_ring"]] == 0
    assert pair_row(batch, only_a[0], only_a[1])[COL["same_ring"]] == 1


def test_heptane_graph_distance_bits(qm9_graph):
    rec, graph, mol = qm9_graph(2720)  # CCCCCCC
    batch = make_batch([graph], np.array([2720]))
    cs = positions_of(rec.atomic_numbers, 6)
    ends = [c for c in cs if sum(n.GetAtomicNum() == 6 for n in mol.GetAtomWithIdx(c).GetNeighbors()) == 1]
    c1, c7 = ends
    assert pair_row(batch, c1, c7)[DIST].tolist() == [0, 0, 0, 0, 0, 1, 1]     # 6 bonds
    h1 = [n.GetIdx() for n in mol.GetAtomWithIdx(c1).GetNeighbors() if n.GetAtomicNum() == 1][0]
    h7 = [n.GetIdx() for n in mol.GetAtomWithIdx(c7).GetNeighbors() if n.GetAtomicNum() == 1][0]
    assert pair_row(batch, h1, c7)[DIST].tolist() == [0, 0, 0, 0, 0, 0, 1]     # 7 bonds
    assert pair_row(batch, h1, h7)[DIST].tolist() == [0] * 7                   # 8 bonds: beyond the cutoff


def reference_pairs(mol: Chem.Mol, coords: np.ndarray) -> np.ndarray:
    """Per-pair loop with RDKit's own topological distance matrix: an independent reference."""
    topo = Chem.GetDistanceMatrix(mol)
    rings = [set(r) for r in mol.GetRingInfo().AtomRings()]
    code = {Chem.BondType.SINGLE: 0, Chem.BondType.DOUBLE: 1, Chem.BondType.TRIPLE: 2, Chem.BondType.AROMATIC: 3}
    rows = []
    for i, j in itertools.combinations(range(mol.GetNumAtoms()), 2):
        row = np.zeros(13, dtype=np.float32)
        bond = mol.GetBondBetweenAtoms(i, j)
        if bond is not None:
            row[code[bond.GetBondType()]] = 1
        row[4:11] = [topo[i, j] <= d for d in range(1, 8)]
        row[11] = any(i in r and j in r for r in rings)
        row[12] = np.linalg.norm(coords[i] - coords[j])
        rows.append(row)
    return np.array(rows)


def test_batch_matches_reference(qm9_graph):
    indices = [1, 3, 50, 67, 214, 271, 662, 2720]
    made = [qm9_graph(k) for k in indices]
    batch = make_batch([g for _, g, _ in made], np.array(indices))
    expected = np.concatenate([reference_pairs(mol, rec.coordinates) for rec, _, mol in made])
    np.testing.assert_allclose(batch.pair_features, expected, atol=1e-5)
    assert batch.n_molecules == len(indices)
    assert np.all(batch.atom_molecule[batch.pair_atoms[:, 0]] == batch.pair_molecule)
    assert np.all(batch.atom_molecule[batch.pair_atoms[:, 1]] == batch.pair_molecule)
