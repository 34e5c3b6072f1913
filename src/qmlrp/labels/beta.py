"""Static dipole, polarizability and first hyperpolarizability of one closed-shell molecule.

The backend is PySCF. One coupled-perturbed (CPHF/CPKS) solve for the three field directions
gives the first-order orbitals ``U^x`` (virtual x occupied). From them

* ``α_xy = -4 Σ_ai h^x_ai U^y_ai`` (bohr³), and
* ``β_xyz`` by the 2n+1 rule, the formula of ``pyscf.prop.polarizability.rhf.hyper_polarizability``
  (first-order Fock matrix with two first-order orbitals, minus the overlap/orbital-energy term,
  summed over the six index permutations), plus the exchange-correlation third-derivative term
  that pyscf-properties omits (:mod:`qmlrp.labels.xc_kernel`).

Conventions (atomic units throughout): the perturbation is ``H(F) = H0 - μ̂·F`` with the dipole
origin at the coordinate origin, so ``E(F) = E0 - μ_a F_a - ½ α_ab F_a F_b - ⅙ β_abc F_a F_b F_c``
and ``β_abc = ∂²μ_a/∂F_b∂F_c``, which at zero frequency equals DALTON's ``beta(A;B,C)``.
Tensors are given in the input coordinate frame (no reorientation).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from qmlrp.labels.xc_kernel import xc_family, xc_third_derivative

__all__ = [
    "Level",
    "BetaResult",
    "LabelFailure",
    "beta_parallel",
    "beta_vector",
    "build_molecule",
    "compute_beta",
    "compute_beta_for_molecule",
    "program_versions",
]

_METHODS = ("rhf", "rks")
_CPHF_REFINE = 5    # Krylov solves (first + refinements)
_CPHF_DONE = 2e-6   # stop refining when max |residual / (ε_a - ε_i)| is below this
_CPHF_FAIL = 1e-5   # ... and record a failure when it stays above this


class LabelFailure(RuntimeError):
    """A molecule whose labels could not be computed; ``str(err)`` is the recorded reason."""


@dataclass(frozen=True)
class Level:
    """Level of theory and numerical settings of a β calculation.

    Attributes:
        method: ``"rhf"`` (Hartree-Fock) or ``"rks"`` (closed-shell Kohn-Sham).
        xc: PySCF functional for ``rks``. ``"b3lyp5"`` is DALTON's B3LYP (VWN5);
            ``"b3lypg"`` is Gaussian's B3LYP (VWN3), the functional QM9 itself was computed with
            (PySCF's bare ``"b3lyp"`` means the same and is stored as ``"b3lypg"``).
            Ignored (stored as ``"hf"``) for ``rhf``.
        basis: basis-set name understood by PySCF, e.g. ``"6-31g"``, ``"6-31g(2df,p)"``.
        grid_level: PySCF DFT grid level (0-9).
        conv_tol: SCF energy convergence threshold (Hartree).
        cphf_tol: relative tolerance of the Krylov CPHF/CPKS solver.
        max_cycle: maximum SCF iterations (a Newton fallback gets as many again).
        density_fit: use density fitting (RI-J/K) for SCF and response.
        auxbasis: auxiliary basis for density fitting (``None``: PySCF's default).
        cart: Cartesian (6d/10f) instead of spherical d and f shells.
        max_memory_mb: PySCF's memory budget per calculation (not part of the level identity).
    """

    method: str = "rks"
    xc: str = "b3lyp5"
    basis: str = "6-31g"
    grid_level: int = 3
    conv_tol: float = 1e-10
    cphf_tol: float = 1e-9
    max_cycle: int = 100
    density_fit: bool = False
    auxbasis: str | None = None
    cart: bool = False
    max_memory_mb: int = 4000

    def __post_init__(self) -> None:
        method = self.method.lower()
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        object.__setattr__(self, "method", method)
        xc = "hf" if method == "rhf" else str(self.xc).lower().replace(" ", "")
        if xc == "b3lyp":  # PySCF's plain "b3lyp" is libxc's VWN3 (Gaussian) variant
            xc = "b3lypg"
        object.__setattr__(self, "xc", xc)
        object.__setattr__(self, "basis", str(self.basis).lower())
        # YAML reads "1e-10" (no dot) as a string: coerce numbers here, once
        for name, kind in (("grid_level", int), ("conv_tol", float), ("cphf_tol", float),
                           ("max_cycle", int), ("max_memory_mb", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        for name in ("density_fit", "cart"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        if not 0 <= self.grid_level <= 9:
            raise ValueError(f"grid_level must be 0..9, got {self.grid_level}")
        if self.conv_tol <= 0 or self.cphf_tol <= 0 or self.max_cycle < 1:
            raise ValueError("conv_tol and cphf_tol must be > 0 and max_cycle >= 1")

    def identity(self) -> dict[str, Any]:
        """Fields that change the numbers beyond solver noise; labels mix only if these agree."""
        return {
            "method": self.method,
            "xc": self.xc,
            "basis": self.basis,
            "grid_level": self.grid_level if self.method == "rks" else None,
            "density_fit": self.density_fit,
            "auxbasis": self.auxbasis if self.density_fit else None,
            "cart": self.cart,
        }

    def slug(self) -> str:
        """Short file-system-safe name, e.g. ``rks-b3lyp5-6-31g_2df_p_``."""
        basis = "".join(c if c.isalnum() or c in "-+" else "_" for c in self.basis)
        parts = [self.method, self.xc, basis]
        if self.density_fit:
            parts.append("df")
        if self.cart:
            parts.append("cart")
        return "-".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """All fields, for metadata files."""
        return asdict(self)


@dataclass
class BetaResult:
    """Labels of one molecule (atomic units).

    Attributes:
        energy: SCF total energy (Hartree).
        dipole: dipole moment μ, shape ``(3,)`` (e·bohr).
        alpha: static polarizability α_ab, shape ``(3, 3)`` (bohr³).
        beta: static first hyperpolarizability β_abc = ∂²μ_a/∂F_b∂F_c, shape ``(3, 3, 3)``.
        beta_parallel: β∥ (see :func:`beta_parallel`); NaN when |μ| vanishes.
        beta_vec: |β_vec| (see :func:`beta_vector`).
        n_basis: number of basis functions.
        cphf_residual: max |r_ai / (ε_a - ε_i)| of the CPHF/CPKS residual r, an estimate of
            the error in the first-order orbital coefficients.
        wall_s: wall-clock seconds (SCF + response).
        cpu_s: CPU seconds of this process (all threads).
        xc_kernel_term: the XC third-derivative contribution already included in ``beta``,
            shape ``(3, 3, 3)`` (zero for HF).
        scf_converged: PySCF's convergence flag of the SCF the labels come from.
    """

    energy: float
    dipole: NDArray[np.float64]
    alpha: NDArray[np.float64]
    beta: NDArray[np.float64]
    beta_parallel: float
    beta_vec: float
    n_basis: int
    cphf_residual: float
    wall_s: float
    cpu_s: float
    xc_kernel_term: NDArray[np.float64] = field(repr=False, default_factory=lambda: np.zeros((3, 3, 3)))
    scf_converged: bool = True


def beta_vector(beta: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vector part of β: ``b_i = (1/3) Σ_j (β_ijj + β_jij + β_jji)``, shape ``(3,)``.

    Its norm is the |β_vec| label; ``β∥ = (3/5) b·μ/|μ|``.
    """
    beta = np.asarray(beta, dtype=float).reshape(3, 3, 3)
    return (np.einsum("ijj->i", beta) + np.einsum("jij->i", beta) + np.einsum("jji->i", beta)) / 3.0


def beta_parallel(beta: NDArray[np.float64], dipole: NDArray[np.float64],
                  min_dipole: float = 1e-6) -> float:
    """β∥ = (1/(5|μ|)) Σ_ij μ_j (β_jii + β_iji + β_iij).

    Willetts, Rice, Burland & Shelton, J. Chem. Phys. 97, 7590 (1992). ``beta`` has shape
    ``(3, 3, 3)`` (β_abc = ∂²μ_a/∂F_b∂F_c), ``dipole`` shape ``(3,)``, both in a.u. Returns NaN
    when |μ| < ``min_dipole`` (the projection is undefined for non-polar molecules).
    """
    mu = np.asarray(dipole, dtype=float).reshape(3)
    norm = float(np.linalg.norm(mu))
    if not np.isfinite(norm) or norm < min_dipole:
        return float("nan")
    beta = np.asarray(beta, dtype=float).reshape(3, 3, 3)
    s = np.einsum("jii->j", beta) + np.einsum("iji->j", beta) + np.einsum("iij->j", beta)
    return float(mu @ s / (5.0 * norm))


def program_versions() -> dict[str, str]:
    """Versions of the programs that produce the labels: pyscf, pyscf-properties, libxc, qmlrp."""
    import importlib.metadata as md

    import pyscf
    from pyscf.dft import libxc

    versions = {"pyscf": str(pyscf.__version__), "pyscf-properties": "unknown",
                "libxc": str(libxc.__version__), "qmlrp": "unknown"}
    for name in ("pyscf-properties", "qmlrp"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:  # pragma: no cover - running from a source tree
            pass
    return versions


def build_molecule(atomic_numbers: Sequence[int], coordinates: Sequence[float] | NDArray[np.float64],
                   basis: str, *, unit: str = "Angstrom", charge: int = 0, cart: bool = False,
                   max_memory_mb: int = 4000) -> Any:
    """Build a PySCF ``Mole`` without reorienting it.

    Args:
        atomic_numbers: Z of each atom, length ``n``.
        coordinates: flattened ``(3n,)`` or ``(n, 3)`` Cartesian coordinates in ``unit``.
        basis: PySCF basis name.
        unit: ``"Angstrom"`` or ``"Bohr"``.
        charge: total charge (the molecule must be closed-shell).
        cart: Cartesian d/f shells.
        max_memory_mb: PySCF memory budget (MB).
    """
    from pyscf import gto

    z = [int(a) for a in atomic_numbers]
    xyz = np.asarray(coordinates, dtype=float).reshape(-1, 3)
    if len(z) == 0 or xyz.shape[0] != len(z):
        raise LabelFailure(f"geometry: {len(z)} atomic numbers but {xyz.shape[0]} coordinate rows")
    if not np.all(np.isfinite(xyz)):
        raise LabelFailure("geometry: non-finite coordinates")
    nelec = sum(z) - charge
    if nelec % 2:
        raise LabelFailure(f"open shell ({nelec} electrons): closed-shell RHF/RKS only")
    try:
        mol = _gto_mole(gto, z, xyz, basis, unit, charge, cart, max_memory_mb)
    except Exception as err:  # PySCF raises many types (KeyError for unknown basis, ...)
        raise LabelFailure(f"PySCF molecule build failed: {type(err).__name__}: {err}") from err
    return mol


def _gto_mole(gto: Any, z: list[int], xyz: NDArray[np.float64], basis: str, unit: str,
              charge: int, cart: bool, max_memory_mb: int) -> Any:
    mol = gto.Mole()
    mol.atom = [(int(a), tuple(float(c) for c in row)) for a, row in zip(z, xyz)]
    mol.unit = unit
    mol.basis = basis
    mol.charge = charge
    mol.spin = 0
    mol.cart = cart
    mol.symmetry = False
    mol.verbose = 0
    mol.max_memory = max_memory_mb
    mol.build()
    return mol


def _run_scf(mol: Any, level: Level) -> Any:
    from pyscf import dft, scf

    if level.method == "rhf":
        mf = scf.RHF(mol)
    else:
        mf = dft.RKS(mol)
        mf.xc = level.xc
        mf.grids.level = level.grid_level
    if level.density_fit:
        mf = mf.density_fit(auxbasis=level.auxbasis)
    mf.conv_tol = level.conv_tol
    mf.max_cycle = level.max_cycle
    mf.verbose = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mf.kernel()
    if not mf.converged:
        # second-order (Newton) fallback from the DIIS end point
        mf2 = mf.newton()
        mf2.max_cycle = level.max_cycle
        mf2.kernel(mf.mo_coeff, mf.mo_occ)
        if not mf2.converged:
            raise LabelFailure(
                f"SCF not converged ({level.max_cycle} DIIS + {level.max_cycle} Newton cycles, "
                f"conv_tol={level.conv_tol:g})")
        mf = mf2
    if np.any(mf.mo_occ[mf.mo_occ > 0] < 1.999):
        raise LabelFailure("SCF ended with fractional occupations")
    return mf


def _response(mf: Any, level: Level) -> tuple[NDArray[np.float64], NDArray[np.float64],
                                               NDArray[np.float64], float]:
    """Return ``(alpha (3,3), beta (3,3,3), K (3,3,3), cphf_residual)`` for a converged SCF."""
    from pyscf import lib
    from pyscf.scf import cphf

    mol = mf.mol
    mo_coeff = mf.mo_coeff
    mo_occ = mf.mo_occ
    mo_energy = mf.mo_energy
    occ = mo_occ > 0
    orbo = mo_coeff[:, occ]
    orbv = mo_coeff[:, ~occ]
    nocc, nvir = orbo.shape[1], orbv.shape[1]
    if nvir == 0:
        raise LabelFailure("no virtual orbitals in this basis")

    with mol.with_common_orig((0.0, 0.0, 0.0)):
        r_ao = mol.intor_symmetric("int1e_r", comp=3)  # (3, nao, nao)
    h1 = lib.einsum("xpq,pa,qi->xai", r_ao, orbv, orbo)  # (3, nvir, nocc)

    vresp = mf.gen_response(hermi=1)

    def dm_from(u: NDArray[np.float64]) -> NDArray[np.float64]:
        dm = lib.einsum("pa,xai,qi->xpq", orbv, u.reshape(-1, nvir, nocc), orbo) * 2.0
        return dm + dm.transpose(0, 2, 1)

    def fvind(u: NDArray[np.float64]) -> NDArray[np.float64]:
        return lib.einsum("xpq,pa,qi->xai", vresp(dm_from(u)), orbv, orbo)

    e_ai = mo_energy[~occ][:, None] - mo_energy[occ][None, :]
    if float(e_ai.min()) <= 1e-4:
        raise LabelFailure(f"HOMO-LUMO gap {float(e_ai.min()):.2e} Eh: not a stable closed shell")
    rhs = h1
    u = np.zeros_like(h1)
    # Krylov solve of (ε_a - ε_i) U_ai + [G(D1[U])]_ai = -h1_ai, then iterative refinement on
    # the residual: PySCF's Krylov solver stops on an absolute linear-dependence threshold,
    # which can leave a sizeable residual (e.g. core excitations, very small bases).
    for _ in range(_CPHF_REFINE):
        size = float(np.max(np.abs(rhs)))
        if size == 0.0:
            raise LabelFailure("dipole perturbation has no occupied-virtual coupling")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            du, _ = cphf.solve(fvind, mo_energy, mo_occ, rhs / size, None,
                               max_cycle=100, tol=level.cphf_tol)
        u = u + du.reshape(3, nvir, nocc) * size
        dm1 = dm_from(u)  # first-order total density matrices (3, nao, nao)
        v1 = vresp(dm1)  # reused below for the first-order Fock matrices
        resid = e_ai * u + lib.einsum("xpq,pa,qi->xai", v1, orbv, orbo) + h1
        residual = float(np.max(np.abs(resid / e_ai)))  # ≈ error of U
        if not np.isfinite(residual) or residual <= _CPHF_DONE:
            break
        rhs = resid
    if not np.isfinite(residual) or residual > _CPHF_FAIL:
        raise LabelFailure(f"CPHF/CPKS not converged (max error of U {residual:.2e})")

    alpha = -4.0 * np.einsum("xai,yai->xy", h1, u)
    alpha = 0.5 * (alpha + alpha.T)

    f1 = r_ao + v1  # first-order Fock matrices in the AO basis
    c1 = lib.einsum("pa,xai->xpi", orbv, u)  # (3, nao, nocc)
    e1 = lib.einsum("xpq,pi,qj->xij", f1, orbo, orbo)  # (3, nocc, nocc)
    s11 = lib.einsum("xai,yaj->xyij", u, u)  # C1x^T S C1y
    t = 2.0 * lib.einsum("xpq,ypi,zqi->xyz", f1, c1, c1)
    t -= 2.0 * lib.einsum("xyij,zij->xyz", s11, e1)
    e3 = (t + t.transpose(1, 2, 0) + t.transpose(2, 0, 1)
          + t.transpose(0, 2, 1) + t.transpose(1, 0, 2) + t.transpose(2, 1, 0))
    kxc = xc_third_derivative(mf, dm1)
    beta = -e3 - kxc
    return alpha, beta, kxc, residual


def compute_beta(mol: Any, level: Level) -> BetaResult:
    """Run SCF and response for a built PySCF molecule and return its labels.

    Raises:
        LabelFailure: SCF or CPHF not converged, unsupported functional, or a PySCF error.
    """
    if level.method == "rks":
        from pyscf import dft

        probe = dft.RKS(mol)
        probe.xc = level.xc
        try:
            family = xc_family(probe)
        except Exception as err:
            raise LabelFailure(f"unknown functional {level.xc!r}: {err}") from err
        if family not in ("LDA", "GGA", "HF"):
            raise LabelFailure(f"functional {level.xc!r} is {family}; β needs LDA or GGA (hybrids ok)")

    t0, c0 = time.perf_counter(), time.process_time()
    try:
        mf = _run_scf(mol, level)
        alpha, beta, kxc, residual = _response(mf, level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dipole = np.asarray(mf.dip_moment(mol, mf.make_rdm1(), unit="AU", verbose=0), dtype=float)
        energy = float(mf.e_tot)
        converged = bool(mf.converged)
    except LabelFailure:
        raise
    except MemoryError as err:
        raise LabelFailure("out of memory") from err
    except Exception as err:
        raise LabelFailure(f"PySCF error: {type(err).__name__}: {err}") from err
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(alpha)) and np.isfinite(energy)):
        raise LabelFailure("non-finite result")
    return BetaResult(
        energy=energy,
        dipole=dipole,
        alpha=alpha,
        beta=beta,
        beta_parallel=beta_parallel(beta, dipole),
        beta_vec=float(np.linalg.norm(beta_vector(beta))),
        n_basis=int(mol.nao_nr()),
        cphf_residual=residual,
        wall_s=time.perf_counter() - t0,
        cpu_s=time.process_time() - c0,
        xc_kernel_term=kxc,
        scf_converged=converged,
    )


def compute_beta_for_molecule(atomic_numbers: Sequence[int], coordinates: Sequence[float],
                              level: Level, *, unit: str = "Angstrom", charge: int = 0) -> BetaResult:
    """Build the molecule from Z and coordinates (see :func:`build_molecule`) and compute β."""
    mol = build_molecule(atomic_numbers, coordinates, level.basis, unit=unit, charge=charge,
                         cart=level.cart, max_memory_mb=level.max_memory_mb)
    return compute_beta(mol, level)
