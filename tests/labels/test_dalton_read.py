"""DALTON outputs -> labels: the four fixtures parse to the values their README lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qmlrp.labels.dalton_read import (
    DaltonParseError,
    align_rotation,
    outputs_to_rows,
    parse_quadratic_response,
    read_mol,
    read_output,
)

DALTON = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "dalton"
ANGSTROM_PER_BOHR = 0.52917721092


def fixture(name: str) -> Path:
    path = DALTON / name
    if not path.exists():
        pytest.skip(f"DALTON fixture {path} not available (../shared is absent)")
    return path


# (file, {(A, B, C): README value}, method, xc, basis, point group)
README = [
    ("dft_qr_qlop.out",
     {("Y", "X", "X"): -21.38482, ("Y", "Y", "Y"): -15.36460, ("Y", "Z", "Z"): -1.29497},
     "rks", "b3lyp5", "3-21g", "c1"),
    ("dft_qr_sym_H2O_3-21G_sym.out", {("Y", "Y", "Y"): -15.36417}, "rks", "b3lyp5", "3-21g", "c2v"),
    ("dft_qr_nosym_H2O_3-21G_nosym.out",
     {("Y", "X", "X"): -18.79766, ("X", "X", "X"): 0.24049}, "rks", "slater,vwn5", "aug-cc-pvdz", "c1"),
    ("rsp_hyperpolar_h2o.out",
     {("Z", "Z", "Z"): -7.66499, ("Y", "Y", "Z"): -16.65927}, "mcscf", "none", "6-31++g**", "c2v"),
]
AX = "XYZ"


@pytest.mark.parametrize("name,values,method,xc,basis,group", README, ids=[r[0] for r in README])
def test_fixture_parses_to_readme_values(name, values, method, xc, basis, group) -> None:
    res = read_output(fixture(name))
    for (a, b, c), v in values.items():
        assert res.qr.value(a, b, c) == pytest.approx(v, abs=6e-6)
        assert res.beta[AX.index(a), AX.index(b), AX.index(c)] == pytest.approx(v, abs=6e-6)
    assert (res.method, res.xc, res.basis, res.point_group) == (method, xc, basis, group)
    assert res.beta.shape == (3, 3, 3) and np.all(np.isfinite(res.beta))
    assert list(res.atomic_numbers) == [8, 1, 1]
    assert res.dipole is None  # README: none of these runs prints the ground-state dipole
    assert res.version.startswith("DALTON 20")
    assert res.wall_s is not None and res.wall_s > 0


def test_symmetry_reduced_lines_are_resolved() -> None:
    """In the C2v run only unique components are computed; the others refer to them."""
    sym = read_output(fixture("dft_qr_sym_H2O_3-21G_sym.out"))
    nosym = read_output(fixture("dft_qr_qlop.out"))
    assert sym.qr.references  # the file does contain reference lines
    # static beta(Y;X,X) = beta(X,X,Y) and beta(Y;Z,Z) = beta(Z,Z,Y) are only references
    assert ("Y", "X", "X", 0.0, 0.0) in sym.qr.references
    assert sym.qr.value("Y", "X", "X") == pytest.approx(-21.38430054, abs=1e-8)
    assert sym.qr.value("Y", "Z", "Z") == pytest.approx(-1.29484407, abs=1e-8)
    # same molecule and level without symmetry: all 27 static components agree
    np.testing.assert_allclose(sym.beta, nosym.beta, atol=1e-3)
    # dynamic reference: B=0.1, C=0 beta(X;Y,X) = beta(X;X,Y) at B=0, C=0.1
    assert sym.qr.value("X", "Y", "X", 0.1, 0.0) == pytest.approx(-23.17288140, abs=1e-8)
    assert sym.qr.value("Y", "Y", "Y", 0.0, 0.1) == pytest.approx(-17.25770216, abs=1e-8)
    assert sym.qr.frequencies() == [(0.0, 0.0), (0.0, 0.1), (0.1, 0.0), (0.1, 0.1)]


def test_explicit_values_win_over_references() -> None:
    text = (
        "@ B-freq = 0.000000  C-freq = 0.000000     beta(X;Y,X) = beta(Y,X,X)\n"
        "@ B-freq = 0.000000  C-freq = 0.000000     beta(Y;X,X) =    -21.38482076\n"
        "@ B-freq = 0.000000  C-freq = 0.000000     beta(X;Y,X) =    -21.38428371\n"
        "@ B-freq = 0.000000  C-freq = 0.000000     beta(X;X,Y) = beta(Y,X,X)\n")
    qr = parse_quadratic_response(text)
    assert qr.value("X", "Y", "X") == pytest.approx(-21.38428371)
    assert qr.value("X", "X", "Y") == pytest.approx(-21.38482076)
    assert qr.value("Z", "Z", "Z") is None


def test_static_polarizability_from_linear_response() -> None:
    res = read_output(fixture("dft_qr_qlop.out"))
    assert res.alpha is not None
    assert res.alpha[0, 0] == pytest.approx(6.99255, abs=1e-4)
    assert res.alpha[2, 2] == pytest.approx(0.83774, abs=1e-4)


def test_read_mol_old_fixed_format() -> None:
    mol = read_mol(fixture("dft_qr_qlop.mol"))
    assert mol.basis == "3-21G"
    assert list(mol.atomic_numbers) == [8, 1, 1]
    np.testing.assert_allclose(mol.coords_bohr, [[0, -0.2249, 0], [1.4523, 0.8996, 0],
                                                 [-1.4523, 0.8996, 0]])


def test_rows_rotate_reoriented_output_into_table_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """rsp_hyperpolar: DALTON put the C2 axis on z; the input .mol had it on y, in the xy plane."""
    path = fixture("rsp_hyperpolar_h2o.out")
    xyz_bohr = np.array([[0.0, -0.2249058930, 0.0], [1.45235, 0.899623, 0.0],
                         [-1.45235, 0.899623, 0.0]])
    table = pd.DataFrame({"id": [7], "smiles": ["O"], "n_atoms": [3],
                          "atomic_numbers": [[8, 1, 1]],
                          "coordinates": [list((xyz_bohr * ANGSTROM_PER_BOHR).ravel())]})
    res = read_output(path)
    rot = align_rotation(res.atomic_numbers, res.coords_bohr, [8, 1, 1], xyz_bohr)
    assert rot is not None and not np.allclose(rot, np.eye(3))
    anon_rows, fails = outputs_to_rows([path], table)
    assert not fails
    row = anon_rows[0]
    assert row["id"] == -1  # no qmlrp id in this file's title: anonymous, not rotated
    # as if the title card carried "qmlrp id=7": tensors are rotated into the table frame
    import qmlrp.labels.dalton_read as dr

    def with_id(p):
        r = read_output(p)
        r.mol_id = 7
        return r

    monkeypatch.setattr(dr, "read_output", with_id)
    rows, fails = outputs_to_rows([path], table)
    assert not fails and rows[0]["id"] == 7 and rows[0]["smiles"] == "O"
    beta = np.asarray(rows[0]["beta_au"]).reshape(3, 3, 3)
    assert beta[1, 1, 1] == pytest.approx(-7.66499, abs=1e-4)       # DALTON's zzz
    assert abs(beta[1, 0, 0]) == pytest.approx(16.65927, abs=1e-4)  # DALTON's zyy / yyz
    assert rows[0]["beta_vec_au"] == pytest.approx(row["beta_vec_au"])  # invariant
    assert rows[0]["source"] == "dalton" and np.isnan(rows[0]["beta_parallel_au"])


def test_geometry_mismatch_and_non_dalton_files_are_failures(tmp_path: Path) -> None:
    bad = tmp_path / "not_dalton.out"
    bad.write_text("hello\n")
    with pytest.raises(DaltonParseError):
        read_output(bad)
    rows, fails = outputs_to_rows([bad, fixture("dft_qr_qlop.out")])
    assert len(rows) == 1 and len(fails) == 1 and fails[0][0] == str(bad)
