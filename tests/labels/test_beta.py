"""PySCF β backend: formulae, finite-field checks, pyscf-properties, DALTON fixtures."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest

from qmlrp.labels.beta import (
    Level,
    LabelFailure,
    beta_parallel,
    beta_vector,
    build_molecule,
    compute_beta,
    compute_beta_for_molecule,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
DALTON = SHARED / "fixtures" / "dalton"

# A distorted water (Å): no symmetry, so every β component is non-zero.
WATER_Z = [8, 1, 1]
WATER_XYZ = [0.0, 0.0, 0.0, 0.0, 0.757, 0.587, 0.05, -0.78, 0.55]
HF_Z = [9, 1]
HF_XYZ = [0.0, 0.0, 0.0, 0.3, 0.2, 0.9]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One OpenMP thread: much faster than two on a shared 2-core machine (no spin-waiting)."""
    from pyscf import lib

    old = lib.num_threads()
    lib.num_threads(1)
    yield
    lib.num_threads(old)


def _fixture(name: str) -> Path:
    path = DALTON / name
    if not path.exists():
        pytest.skip(f"DALTON fixture {path} not available (../shared is absent)")
    return path


# ----------------------------------------------------------------------------- formulae


def test_beta_parallel_hand_computed() -> None:
    beta = np.zeros((3, 3, 3))
    beta[2, 2, 2] = 10.0   # β_zzz
    beta[2, 0, 0] = 2.0    # β_zxx
    beta[0, 2, 0] = 3.0    # β_xzx
    beta[0, 0, 2] = 4.0    # β_xxz
    beta[0, 0, 0] = 7.0    # β_xxx (μ has no x part: drops out)
    mu = np.array([0.0, 0.0, 2.0])
    # (1/(5|μ|)) Σ_i μ_z (β_zii + β_izi + β_iiz)
    # = (1/5) [(β_zxx + β_xzx + β_xxz) + 3 β_zzz] = (1/5) (9 + 30) = 7.8
    assert beta_parallel(beta, mu) == pytest.approx(7.8)
    # sign follows the dipole; the result does not depend on |μ|
    assert beta_parallel(beta, -5 * mu) == pytest.approx(-7.8)
    # vector part b_z = (1/3)(9 + 30) = 13, b_x = (1/3)(3*7) = 7; β∥ = 3/5 b·μ̂
    b = beta_vector(beta)
    assert b == pytest.approx([7.0, 0.0, 13.0])
    assert beta_parallel(beta, mu) == pytest.approx(0.6 * b @ mu / np.linalg.norm(mu))
    assert np.isnan(beta_parallel(beta, np.zeros(3)))


def test_beta_parallel_is_rotation_invariant() -> None:
    rng = np.random.default_rng(1)
    beta = rng.normal(size=(3, 3, 3))
    mu = rng.normal(size=3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rb = np.einsum("ia,jb,kc,abc->ijk", q, q, q, beta)
    assert beta_parallel(rb, q @ mu) == pytest.approx(beta_parallel(beta, mu))
    assert np.linalg.norm(beta_vector(rb)) == pytest.approx(np.linalg.norm(beta_vector(beta)))


def test_level_normalises_names() -> None:
    assert Level(method="RHF", xc="b3lyp5", basis="6-31G").xc == "hf"
    assert Level(method="rks", xc="B3LYP", basis="6-31g").xc == "b3lypg"
    assert Level(method="rks", xc="b3lyp5", basis="6-31G(2df,p)").slug() == "rks-b3lyp5-6-31g_2df_p_"
    with pytest.raises(ValueError):
        Level(method="ccsd")


def test_open_shell_is_a_recorded_failure() -> None:
    with pytest.raises(LabelFailure, match="open shell"):
        compute_beta_for_molecule([6, 1, 1, 1], [0, 0, 0, 1.08, 0, 0, -0.54, 0.94, 0, -0.54, -0.94, 0],
                                  Level(method="rhf", basis="sto-3g"))


@pytest.mark.filterwarnings("ignore:Basis may be available")
def test_unknown_basis_is_a_recorded_failure() -> None:
    with pytest.raises(LabelFailure, match="PySCF molecule build failed"):
        compute_beta_for_molecule(HF_Z, HF_XYZ, Level(method="rhf", basis="no-such-basis"))


# ----------------------------------------------------------------------------- finite field


def _field_scf(mol, level: Level, field: np.ndarray):
    """Converged SCF with H = H0 - μ̂·F (i.e. + F·r for the electrons)."""
    from pyscf import dft, scf

    mf = scf.RHF(mol) if level.method == "rhf" else dft.RKS(mol, xc=level.xc)
    if level.method == "rks":
        mf.grids.level = level.grid_level
    mf.conv_tol = 1e-13
    mf.conv_tol_grad = 1e-9
    mf.verbose = 0
    h0 = mf.get_hcore()
    with mol.with_common_orig((0.0, 0.0, 0.0)):
        r = mol.intor_symmetric("int1e_r", comp=3)
    mf.get_hcore = lambda *a, **k: h0 + np.einsum("x,xij->ij", field, r)
    mf.kernel()
    assert mf.converged
    return mf


def test_hf_beta_matches_finite_field_dipole_derivative() -> None:
    """β_abc = ∂²μ_a/∂F_b∂F_c by central differences of the SCF dipole."""
    level = Level(method="rhf", basis="6-31g")
    mol = build_molecule(WATER_Z, WATER_XYZ, level.basis)
    analytic = compute_beta(mol, level)
    h = 0.004

    def mu(f: np.ndarray) -> np.ndarray:
        mf = _field_scf(mol, level, f)
        return np.asarray(mf.dip_moment(unit="AU", verbose=0))

    e = np.eye(3) * h
    mu0 = mu(np.zeros(3))
    fd = np.zeros((3, 3, 3))
    for b in range(3):
        fd[:, b, b] = (mu(e[b]) - 2 * mu0 + mu(-e[b])) / h**2
    for b, c in itertools.combinations(range(3), 2):
        d = (mu(e[b] + e[c]) - mu(e[b] - e[c]) - mu(-e[b] + e[c]) + mu(-e[b] - e[c])) / (4 * h**2)
        fd[:, b, c] = fd[:, c, b] = d
    assert np.abs(analytic.beta).max() > 1.0
    np.testing.assert_allclose(analytic.beta, fd, atol=2e-2)
    # the dipole is the zero-field SCF dipole
    np.testing.assert_allclose(analytic.dipole, mu0, atol=1e-6)


@pytest.mark.parametrize("xc", [
    "b3lyp5",
    pytest.param("slater,vwn5", marks=pytest.mark.slow),
    pytest.param("pbe", marks=pytest.mark.slow),
])
def test_dft_beta_matches_finite_field_polarizability(xc: str) -> None:
    """β_abc = ∂α_ab/∂F_c: checks the XC third-derivative term (hybrid GGA; LDA, GGA slow).

    Analytic and finite-field values use the same (coarse) grid, so they must agree closely.
    """
    from qmlrp.labels import beta as beta_mod

    level = Level(method="rks", xc=xc, basis="6-31g", grid_level=1, cphf_tol=1e-10)
    mol = build_molecule(HF_Z, HF_XYZ, level.basis)
    res = compute_beta(mol, level)
    h = 1e-3
    fd = np.zeros((3, 3, 3))
    for c in range(3):
        f = np.zeros(3)
        f[c] = h
        ap = beta_mod._response(_field_scf(mol, level, f), level)[0]
        am = beta_mod._response(_field_scf(mol, level, -f), level)[0]
        fd[:, :, c] = (ap - am) / (2 * h)
    np.testing.assert_allclose(res.beta, fd, atol=2e-3)
    # and the XC kernel term is what makes the difference
    assert np.abs(res.xc_kernel_term).max() > 0.1


def test_agrees_with_pyscf_properties_plus_xc_kernel() -> None:
    """Our 2n+1 terms equal pyscf-properties' hyper_polarizability; K is the missing piece."""
    from pyscf import dft, scf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyscf.prop.polarizability.rhf import Polarizability

    for level in (Level(method="rhf", basis="6-31g"),
                  Level(method="rks", xc="b3lyp5", basis="6-31g", cphf_tol=1e-10)):
        mol = build_molecule(WATER_Z, WATER_XYZ, level.basis)
        ours = compute_beta(mol, level)
        mf = scf.RHF(mol) if level.method == "rhf" else dft.RKS(mol, xc=level.xc)
        mf.conv_tol = 1e-11
        mf.verbose = 0
        mf.kernel()
        pol = Polarizability(mf)
        pol.conv_tol = 1e-10
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = pol.hyper_polarizability()
            alpha = pol.polarizability()
        np.testing.assert_allclose(ours.beta + ours.xc_kernel_term, theirs, atol=1e-4)
        np.testing.assert_allclose(ours.alpha, alpha, atol=1e-5)


# ----------------------------------------------------------------------------- DALTON


def _dalton_reference(name: str) -> np.ndarray:
    from qmlrp.labels.dalton_read import read_output

    return read_output(_fixture(name))


def test_b3lyp_matches_dalton_qlop_within_1e3() -> None:
    """B3LYP(VWN5)/3-21G water at the fixture's own .mol geometry (bohr, same axes)."""
    from qmlrp.labels.dalton_read import read_mol

    mol_file = read_mol(_fixture("dft_qr_qlop.mol"))
    ref = _dalton_reference("dft_qr_qlop.out")
    level = Level(method="rks", xc="b3lyp5", basis="3-21g", grid_level=4, cphf_tol=1e-10)
    res = compute_beta_for_molecule(mol_file.atomic_numbers, mol_file.coords_bohr, level, unit="Bohr")
    err = np.abs(res.beta - ref.beta).max()
    assert err <= 1e-3, f"max |β - β_DALTON| = {err:.2e}"
    assert res.beta[1, 0, 0] == pytest.approx(-21.38482, abs=1e-3)
    assert res.beta[1, 1, 1] == pytest.approx(-15.36460, abs=1e-3)
    assert res.beta[1, 2, 2] == pytest.approx(-1.29497, abs=1e-3)
    assert res.energy == pytest.approx(ref.energy, abs=1e-5)
    np.testing.assert_allclose(res.alpha, ref.alpha, atol=1e-3)


def test_lda_matches_dalton_nosym_within_1e2() -> None:
    """Slater+VWN5 / aug-cc-pVDZ distorted water (geometry from the output, bohr)."""
    ref = _dalton_reference("dft_qr_nosym_H2O_3-21G_nosym.out")
    level = Level(method="rks", xc="slater,vwn5", basis="aug-cc-pvdz", grid_level=4, cphf_tol=1e-10)
    res = compute_beta_for_molecule(ref.atomic_numbers, ref.coords_bohr, level, unit="Bohr")
    err = np.abs(res.beta - ref.beta).max()
    assert err <= 1e-2, f"max |β - β_DALTON| = {err:.2e}"
    assert res.beta[1, 0, 0] == pytest.approx(-18.79766, abs=1e-2)
    assert res.beta[0, 0, 0] == pytest.approx(0.24049, abs=1e-2)
    assert res.energy == pytest.approx(ref.energy, abs=1e-5)
