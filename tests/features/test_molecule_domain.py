"""Wrong chemistry is refused, not predicted: disconnected blocks, ions, unparsable SMILES."""

from __future__ import annotations

import numpy as np
import pytest

from qmlrp.errors import InputError
from qmlrp.features.molecule import build_molecule

NH4 = ([7, 1, 1, 1, 1], [[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]])
HYDROXIDE = ([8, 1], [[0, 0, 0], [0.97, 0, 0]])
H3O = ([8, 1, 1, 1], [[0, 0, 0], [0.98, 0, 0], [-0.49, 0.85, 0], [-0.49, -0.85, 0.0]])
METHYL = ([6, 1, 1, 1], [[0, 0, 0], [1.08, 0, 0], [-0.54, 0.94, 0], [-0.54, -0.94, 0]])


def build(case, name="m"):
    numbers, coords = case
    return build_molecule(np.array(numbers), np.array(coords, dtype=float), None, name)


def error_of(case) -> str:
    with pytest.raises(InputError) as err:
        build(case)
    return err.value.reason


def test_two_molecules_in_one_block_are_rejected(qm9_record):
    a, b = qm9_record(1), qm9_record(3)  # methane and water, 5 A apart, in one XYZ block
    numbers = np.concatenate([a.atomic_numbers, b.atomic_numbers])
    coords = np.concatenate([a.coordinates, b.coordinates + [5.0, 0, 0]])
    with pytest.raises(InputError) as err:
        build_molecule(numbers, coords, None, "two")
    assert err.value.reason.startswith("disconnected: 2 fragments")


def test_cations_and_anions_are_reported_as_charged_not_radical():
    assert error_of(NH4) == "odd number of electrons: charged: perceived as a cation (net charge +1); outside the neutral QM9 domain"
    assert "an anion (net charge -1)" in error_of(HYDROXIDE)
    assert "a cation (net charge +1)" in error_of(H3O)
    for reason in (error_of(NH4), error_of(HYDROXIDE), error_of(H3O)):
        assert "radical" not in reason


def test_ambiguous_odd_electron_species_says_so():
    reason = error_of(METHYL)
    assert reason.startswith("odd number of electrons: a radical, or an ion of net charge +1 or -1")


def test_dication_is_reported_as_charged():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("[NH3+]CC[NH3+]"))  # ethane-1,2-diammonium, even electron count
    AllChem.EmbedMolecule(mol, randomSeed=7)
    case = ([a.GetAtomicNum() for a in mol.GetAtoms()], mol.GetConformer().GetPositions().tolist())
    assert error_of(case) == "charged: perceived as a cation (net charge +2); outside the neutral QM9 domain"


def test_unparsable_smiles_is_an_error_not_a_silent_fallback(qm9_record):
    rec = qm9_record(214)
    with pytest.raises(InputError, match=r"RDKit cannot parse the SMILES 'c1ccc\(cc1'"):
        build_molecule(rec.atomic_numbers, rec.coordinates, "c1ccc(cc1", rec.name)
