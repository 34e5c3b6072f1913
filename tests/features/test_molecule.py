"""Building RDKit molecules from geometries: atom order, bond orders, domain errors."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from qmlrp.errors import InputError
from qmlrp.features.featurize import featurize_geometry
from qmlrp.features.molecule import BOND_FROM_GEOMETRY, BOND_FROM_TEMPLATE, build_molecule


@pytest.mark.parametrize("index", [1, 50, 214, 271, 697, 18936])
def test_atom_order_and_smiles(qm9_record, index):
    rec = qm9_record(index)
    mol, origin = build_molecule(rec.atomic_numbers, rec.coordinates, rec.smiles, rec.name)
    assert origin == BOND_FROM_TEMPLATE
    assert [a.GetAtomicNum() for a in mol.GetAtoms()] == rec.atomic_numbers.tolist()
    assert np.allclose(mol.GetConformer().GetPositions(), rec.coordinates)
    expected = Chem.MolToSmiles(Chem.MolFromSmiles(rec.smiles), isomericSmiles=False)
    assert Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False) == expected


def test_strained_cage_keeps_template(qm9_record):
    """697 (C1C2C3OC2C13) has non-bonded C...C contacts of 1.78 A; a 1.3 x covalent cutoff would bond them."""
    rec = qm9_record(697)
    mol, origin = build_molecule(rec.atomic_numbers, rec.coordinates, rec.smiles, rec.name)
    assert origin == BOND_FROM_TEMPLATE and mol.GetNumBonds() == 14


def test_without_smiles_perceives_from_geometry(qm9_record):
    rec = qm9_record(214)
    mol, origin = build_molecule(rec.atomic_numbers, rec.coordinates, None, "benzene")
    assert origin == BOND_FROM_GEOMETRY
    assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == "c1ccccc1"


def test_wrong_template_falls_back_to_geometry(qm9_record):
    rec = qm9_record(214)
    _, origin = build_molecule(rec.atomic_numbers, rec.coordinates, "CCCCCC", "benzene")
    assert origin == BOND_FROM_GEOMETRY


@pytest.mark.parametrize(
    "numbers, coords, reason",
    [
        ([17, 1], [[0, 0, 0], [1.27, 0, 0]], "element(s) Cl outside H, C, N, O, F"),
        ([6] * 30, np.arange(90).reshape(30, 3), "30 atoms, more than the 29 of QM9"),
        ([6, 1, 1, 1], [[0, 0, 0], [1.08, 0, 0], [-0.54, 0.93, 0], [-0.54, -0.93, 0]], "odd number of electrons"),
    ],
)
def test_domain_errors(numbers, coords, reason):
    with pytest.raises(InputError) as err:
        featurize_geometry(np.array(numbers), np.array(coords, dtype=float), name="bad")
    assert str(err.value).startswith("bad: ") and reason in str(err.value)
    assert "\n" not in str(err.value)


def test_unperceivable_structure():
    """Two carbons 3 A apart with nothing else: no sane closed-shell structure."""
    with pytest.raises(InputError, match="^far: "):
        featurize_geometry(np.array([6, 6]), np.array([[0.0, 0, 0], [3.0, 0, 0]]), name="far")


def test_no_nan_gasteiger(qm9_graph):
    for index in (1, 5, 271, 282, 1642, 4015):
        _, graph, _ = qm9_graph(index)
        assert np.isfinite(graph.atom_features).all()


def test_no_gasteiger_parameters_is_an_input_error():
    """Carbon monoxide perceived from the geometry has an sp O, for which Gasteiger has no parameters."""
    with pytest.raises(InputError) as err:
        featurize_geometry(np.array([6, 8]), np.array([[0.0, 0, 0], [1.13, 0, 0]]), name="co")
    assert str(err.value).startswith("co: no Gasteiger charge for this structure (No Gasteiger Partial Charge parameters")
