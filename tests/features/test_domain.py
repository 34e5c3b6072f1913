"""Training-domain warnings against QM9's own ranges (derived from all of QM9, shipped as JSON)."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.features.domain import derive_ranges, domain_warnings, qm9_ranges
from qmlrp.features.featurize import featurize_geometry


def embedded(smiles: str, seed: int = 3):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def test_shipped_ranges_are_qm9s():
    r = qm9_ranges()
    assert r["n_molecules"] == 130_831 and r["max_heavy_atoms"] == 9
    assert r["max_element_counts"] == {"H": 20, "C": 9, "N": 7, "O": 5, "F": 6}
    assert r["bond_length_range"]["H-C single"] == [1.0613, 1.1185]
    assert r["bond_length_range"]["C-C single"] == [1.3525, 1.6688]
    assert "N-N single" not in r["bond_length_range"]  # GDB-17 has no hydrazines


def test_derive_ranges_known_answer(qm9_graph):
    methane, water = qm9_graph(1)[1], qm9_graph(3)[1]
    r = derive_ranges(iter([methane, water]))
    assert r["n_molecules"] == 2 and r["max_heavy_atoms"] == 1
    assert r["max_element_counts"] == {"H": 4, "C": 1, "N": 0, "O": 1, "F": 0}
    assert sorted(r["bond_length_range"]) == ["H-C single", "H-O single"]
    ch = np.linalg.norm(methane.coordinates[methane.bonds[:, 0]] - methane.coordinates[methane.bonds[:, 1]], axis=1)
    low, high = r["bond_length_range"]["H-C single"]
    assert low == pytest.approx(np.quantile(ch, 1e-4), abs=1e-4) and high == pytest.approx(np.quantile(ch, 1 - 1e-4), abs=1e-4)


@pytest.mark.parametrize("index", [1, 3, 214, 662, 4000, 57518, 127825])
def test_qm9_molecules_are_inside(qm9_graph, index):
    assert domain_warnings(qm9_graph(index)[1]) == []


def test_more_heavy_atoms_or_elements_than_qm9_are_outside():
    numbers, coords = embedded("c1ccc2ccccc2c1")  # naphthalene: 10 C
    warnings = domain_warnings(featurize_geometry(numbers, coords, None, "naphthalene"))
    assert warnings == ["10 heavy atoms, QM9 has at most 9", "10 C atoms, QM9 has at most 9"]
    numbers, coords = embedded("FC(F)(F)C(F)(F)C(F)(F)F")  # octafluoropropane
    warnings = domain_warnings(featurize_geometry(numbers, coords, None, "C3F8"))
    assert "11 heavy atoms, QM9 has at most 9" in warnings and "8 F atoms, QM9 has at most 6" in warnings


@pytest.mark.parametrize("scale", [1.10, 1.15, 0.88])
def test_stretched_geometry_is_outside(qm9_record, scale):
    rec = qm9_record(214)  # benzene
    centre = rec.coordinates.mean(axis=0)
    graph = featurize_geometry(rec.atomic_numbers, centre + scale * (rec.coordinates - centre), None, "benzene")
    warnings = domain_warnings(graph)
    assert any(w.startswith("H-C single bond length") and "outside QM9's 1.061-1.119 Å" in w for w in warnings)
