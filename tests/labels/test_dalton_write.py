"""DALTON inputs: required keywords, basis/functional names, re-readable geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qmlrp.errors import InputError
from qmlrp.labels.beta import Level
from qmlrp.labels.dalton_read import read_mol
from qmlrp.labels.dalton_write import (
    dal_input,
    dalton_basis_name,
    dalton_functional,
    mol_input,
    write_inputs,
)

BOHR_PER_ANGSTROM = 1.0 / 0.52917721092


def formaldehyde_and_methanol() -> pd.DataFrame:
    """Atoms deliberately interleaved (H before O) to exercise the element grouping."""
    return pd.DataFrame({
        "id": [12, 345],
        "smiles": ["C=O", "CO"],
        "n_atoms": [4, 6],
        "atomic_numbers": [[6, 1, 8, 1], [6, 8, 1, 1, 1, 1]],
        "coordinates": [
            [0.0, 0.0, 0.0, 0.0, 0.94, -0.59, 0.0, 0.0, 1.21, 0.0, -0.94, -0.59],
            [-0.05, 0.66, 0.0, -0.05, -0.76, 0.0, -1.09, 0.97, 0.0, 0.44, 1.08, 0.89,
             0.44, 1.08, -0.89, 0.86, -1.08, 0.0],
        ],
    })


def test_basis_and_functional_names() -> None:
    assert dalton_basis_name("6-31g(2df,p)") == "6-31G(2df,p)"
    assert dalton_basis_name("6-31++g**") == "6-31++G**"
    assert dalton_basis_name("sto-3g") == "STO-3G"
    assert dalton_basis_name("aug-cc-pvdz") == "aug-cc-pVDZ"
    assert dalton_basis_name("def2-svp") == "def2-SVP"
    assert dalton_functional("b3lyp5") == "B3LYP"
    assert dalton_functional("b3lypg") == "B3LYPg"
    with pytest.raises(InputError):
        dalton_functional("m06-2x")


def test_dal_has_quadratic_response_keywords() -> None:
    text = dal_input(Level(method="rks", xc="b3lyp5", basis="6-31g(2df,p)"))
    lines = [ln.strip() for ln in text.splitlines()]
    for kw in ("**DALTON INPUT", ".RUN RESPONSE", "**WAVE FUNCTIONS", ".DFT", "B3LYP",
               "**RESPONSE", "*QUADRATIC", ".DIPLEN", ".FREQUENCIES", "**END OF DALTON INPUT"):
        assert kw in lines, kw
    # static frequency only
    i = lines.index(".FREQUENCIES")
    assert lines[i + 1] == "1" and float(lines[i + 2]) == 0.0
    assert lines.index("**WAVE FUNCTIONS") < lines.index("**RESPONSE") < lines.index("*QUADRATIC")
    hf = dal_input(Level(method="rhf", basis="6-31g")).splitlines()
    assert ".HF" in hf and ".DFT" not in hf


def test_written_pairs_are_re_readable(tmp_path: Path) -> None:
    table = formaldehyde_and_methanol()
    level = Level(method="rks", xc="b3lyp5", basis="6-31g(2df,p)")
    pairs = write_inputs(table, tmp_path / "dalton", level)
    assert [p[0].name for p in pairs] == ["qm9_000012.dal", "qm9_000345.dal"]
    jobs = (tmp_path / "dalton" / "dalton_jobs.txt").read_text().splitlines()
    assert jobs == ["dalton -noarch qm9_000012", "dalton -noarch qm9_000345"]
    for (dal, mol), row in zip(pairs, table.itertuples()):
        assert "*QUADRATIC" in dal.read_text()
        text = mol.read_text()
        assert text.splitlines()[1] == "6-31G(2df,p)"
        assert f"qmlrp id={row.id}" in text.splitlines()[2]
        assert "Nosymmetry" in text and "Angstrom" in text
        back = read_mol(mol)
        # grouped by element in order of first appearance
        z = np.asarray(row.atomic_numbers)
        order = [i for zz in dict.fromkeys(z.tolist()) for i in np.nonzero(z == zz)[0]]
        assert list(back.atomic_numbers) == list(z[order])
        xyz = np.asarray(row.coordinates).reshape(-1, 3)[order] * BOHR_PER_ANGSTROM
        np.testing.assert_allclose(back.coords_bohr, xyz, atol=1e-8)
        assert back.charge == 0


def test_mol_input_rejects_inconsistent_geometry() -> None:
    with pytest.raises(InputError):
        mol_input([8, 1], [0.0, 0.0, 0.0], "6-31g")
