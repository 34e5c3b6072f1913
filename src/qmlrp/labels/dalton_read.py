"""DALTON outputs (and ``.mol`` inputs) into the β label table.

cclib's DALTON parser supplies what it already extracts (atoms, coordinates, basis size,
point group, program version, dipole moment when printed). This module adds:

* the quadratic-response block, lines
  ``@ B-freq = 0.000000  C-freq = 0.000000     beta(Y;X,X) =    -21.38482076``, including the
  symmetry-reduced form ``beta(X;Y,X) = beta(Y,X,X)`` where DALTON refers to an equivalent
  component instead of computing it (:class:`QuadraticResponse`);
* the static polarizability from ``-<<A;B>>(omega)`` linear-response lines;
* final energy, method, basis name, title cards and timing.

At zero frequency DALTON's ``beta(A;B,C) = ∂²μ_A/∂F_B∂F_C`` is the same quantity as the PySCF
backend's ``beta[a, b, c]`` (atomic units). Components that a symmetry-adapted run does not print
are zero by symmetry.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from qmlrp.labels import records
from qmlrp.labels.beta import beta_parallel, beta_vector
from qmlrp.labels.dalton_write import element_groups

__all__ = [
    "DaltonParseError",
    "QuadraticResponse",
    "DaltonResult",
    "MolFile",
    "parse_quadratic_response",
    "parse_linear_response",
    "read_output",
    "read_mol",
    "align_rotation",
    "rotate_tensors",
    "outputs_to_rows",
]

BOHR_PER_ANGSTROM = 1.0 / 0.52917721092
DEBYE_PER_AU = 2.541746473
_AXES = "XYZ"
_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][-+]?\d+)?"
_QR_LINE = re.compile(
    rf"^@\s*B-freq\s*=\s*({_FLOAT})\s+C-freq\s*=\s*({_FLOAT})\s+"
    r"beta\(\s*([XYZ])\s*;\s*([XYZ])\s*,\s*([XYZ])\s*\)\s*=\s*"
    rf"(?:beta\(\s*([XYZ])\s*[,;]\s*([XYZ])\s*,\s*([XYZ])\s*\)|({_FLOAT}))", re.M)
_LR_BLOCK = re.compile(
    rf"@\s*A operator, symmetry, frequency:\s+([XYZ])DIPLEN\s+\d+\s+({_FLOAT})\s*\n"
    rf"@\s*B operator, symmetry, frequency:\s+([XYZ])DIPLEN\s+\d+\s+({_FLOAT})\s*\n"
    rf"(?:[^@\n]*\n){{0,3}}@\s*Value of linear response -<<A;B>>\(omega\):\s*({_FLOAT})")
_ENERGY = re.compile(rf"^@?\s*Final\s+(\w+)\s+energy:\s*({_FLOAT})", re.M)
_BASIS = re.compile(r'Basis set used is "([^"]+)"')
_TITLE = re.compile(r'The two title cards from your "\.mol" input:\s*\n\s*-+\s*\n\s*1:(.*)\n\s*2:(.*)\n')
_WALL = re.compile(r"Total wall time used in DALTON:\s*(.*)")
_CPU = re.compile(r"Total CPU\s+time used in DALTON:\s*(.*)")
_QMLRP_ID = re.compile(r"qmlrp id=(\d+)")

_FUNCTIONAL_TO_PYSCF = {"B3LYP": "b3lyp5", "B3LYPG": "b3lypg", "B3LYP-G": "b3lypg",
                        "LDA": "slater,vwn5", "SVWN5": "slater,vwn5", "PBE": "pbe",
                        "PBE0": "pbe0", "BLYP": "blyp", "B3PW91": "b3pw91",
                        "CAMB3LYP": "camb3lyp"}
_METHOD = {"DFT": "rks", "HF": "rhf", "SCF": "rhf", "MCSCF": "mcscf"}


class DaltonParseError(ValueError):
    """A DALTON output lacks what the label table needs; ``str`` is the reason."""


def _f(text: str) -> float:
    return float(text.replace("D", "E").replace("d", "e"))


def _freq(text: str | float) -> float:
    return round(_f(text) if isinstance(text, str) else float(text), 6)


Key = tuple[str, str, str, float, float]  # (A, B, C, B-freq, C-freq)


@dataclass
class QuadraticResponse:
    """``beta(A;B,C)`` values of one output at each printed (B-freq, C-freq).

    Attributes:
        values: explicitly computed components.
        references: components printed as equal to another one, ``(P, Q, R)`` meaning
            ``beta(P;Q,R)`` at the correspondingly permuted frequencies.
    """

    values: dict[Key, float] = field(default_factory=dict)
    references: dict[Key, tuple[str, str, str]] = field(default_factory=dict)

    def frequencies(self) -> list[tuple[float, float]]:
        """Sorted distinct ``(B-freq, C-freq)`` pairs."""
        return sorted({(k[3], k[4]) for k in [*self.values, *self.references]})

    def value(self, a: str, b: str, c: str, wb: float = 0.0, wc: float = 0.0,
              _depth: int = 0) -> float | None:
        """Component ``beta(a;b,c)`` at ``(wb, wc)``: explicit, else resolved through a
        reference by the permutation symmetry of (A,-ωσ), (B,ωB), (C,ωC); None if absent."""
        key = (a.upper(), b.upper(), c.upper(), _freq(wb), _freq(wc))
        if key in self.values:
            return self.values[key]
        target = self.references.get(key)
        if target is None or _depth > 6:
            return None
        labels = key[:3]
        freqs = (-_freq(key[3] + key[4]), key[3], key[4])
        for perm in itertools.permutations(range(3)):
            if tuple(labels[p] for p in perm) != target:
                continue
            f = tuple(freqs[p] for p in perm)
            if abs(f[0] + f[1] + f[2]) > 1e-9:
                continue
            tkey = (*target, _freq(f[1]), _freq(f[2]))
            if tkey == key:
                continue
            if tkey in self.values:
                return self.values[tkey]
            if tkey in self.references:
                v = self.value(*target, f[1], f[2], _depth=_depth + 1)
                if v is not None:
                    return v
        return None

    def tensor(self, wb: float = 0.0, wc: float = 0.0, *, missing: float = float("nan")
               ) -> NDArray[np.float64]:
        """``beta[a, b, c]`` at ``(wb, wc)``, shape ``(3, 3, 3)``; absent components = ``missing``."""
        out = np.full((3, 3, 3), missing, dtype=float)
        for i, j, k in itertools.product(range(3), repeat=3):
            v = self.value(_AXES[i], _AXES[j], _AXES[k], wb, wc)
            if v is not None:
                out[i, j, k] = v
        return out

    def __len__(self) -> int:
        return len(self.values) + len(self.references)


def parse_quadratic_response(text: str) -> QuadraticResponse:
    """All ``@ B-freq = ... beta(A;B,C) = ...`` lines of a DALTON output."""
    qr = QuadraticResponse()
    for m in _QR_LINE.finditer(text):
        key = (m.group(3), m.group(4), m.group(5), _freq(m.group(1)), _freq(m.group(2)))
        if m.group(9) is not None:
            qr.values.setdefault(key, _f(m.group(9)))
        elif key not in qr.references:
            qr.references[key] = (m.group(6), m.group(7), m.group(8))
    return qr


def parse_linear_response(text: str) -> dict[tuple[str, str, float], float]:
    """``{(A, B, ω): -<<A;B>>(ω)}`` for dipole operators (the polarizability α_AB(ω))."""
    out: dict[tuple[str, str, float], float] = {}
    for m in _LR_BLOCK.finditer(text):
        out.setdefault((m.group(1), m.group(3), abs(_freq(m.group(4)))), _f(m.group(5)))
    return out


def _seconds(text: str) -> float | None:
    total, found = 0.0, False
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(hour|minute|second)", text):
        total += float(num) * {"hour": 3600.0, "minute": 60.0, "second": 1.0}[unit]
        found = True
    return total if found else None


@dataclass
class DaltonResult:
    """What one DALTON output contributes to the label table (atomic units, DALTON's frame).

    ``coords_bohr`` shape ``(n, 3)``; ``dipole`` ``(3,)`` or None (not printed);
    ``alpha`` ``(3, 3)`` or None; ``beta`` ``(3, 3, 3)`` static.
    """

    path: Path
    title: tuple[str, str]
    mol_id: int | None
    method: str
    xc: str
    basis: str
    energy: float
    point_group: str
    atomic_numbers: NDArray[np.int64]
    coords_bohr: NDArray[np.float64]
    n_basis: int | None
    dipole: NDArray[np.float64] | None
    alpha: NDArray[np.float64] | None
    beta: NDArray[np.float64]
    qr: QuadraticResponse
    wall_s: float | None
    cpu_s: float | None
    version: str


def _cclib_data(path: Path) -> Any:
    import cclib

    logging.getLogger("cclib").setLevel(logging.ERROR)
    try:
        data = cclib.io.ccread(str(path), loglevel=logging.ERROR)
    except Exception as err:
        raise DaltonParseError(f"cclib could not parse the file: {type(err).__name__}: {err}") from err
    if data is None or getattr(data, "metadata", {}).get("package") != "DALTON":
        raise DaltonParseError("not recognised by cclib as a DALTON output")
    return data


def read_output(path: str | Path) -> DaltonResult:
    """Parse one DALTON output (static β, and what else the label table stores).

    Raises:
        DaltonParseError: no static quadratic-response block, no final energy, or not DALTON.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise DaltonParseError(f"cannot read: {err}") from err
    qr = parse_quadratic_response(text)
    if (0.0, 0.0) not in qr.frequencies():
        raise DaltonParseError("no static quadratic-response (beta) lines")
    data = _cclib_data(path)
    meta = dict(getattr(data, "metadata", {}))

    energies = _ENERGY.findall(text)
    if not energies:
        raise DaltonParseError("no 'Final ... energy' line")
    kind, energy = energies[-1][0].upper(), _f(energies[-1][1])
    method = _METHOD.get(kind, kind.lower())
    if method == "rks":
        func = str(meta.get("functional", "")).upper()
        xc = _FUNCTIONAL_TO_PYSCF.get(func, func.lower())
    else:
        xc = "hf" if method == "rhf" else "none"
    m = _BASIS.search(text)
    basis = (m.group(1) if m else str(meta.get("basis_set", ""))).lower()
    tm = _TITLE.search(text)
    title = (tm.group(1).strip(), tm.group(2).strip()) if tm else ("", "")
    mid = _QMLRP_ID.search(title[0])
    if mid is None:
        mid = re.search(r"qm9_(\d+)", path.name)
    point_group = str(meta.get("symmetry_used", "c1")).lower()
    symmetric = point_group != "c1"

    beta = qr.tensor(0.0, 0.0, missing=0.0 if symmetric else float("nan"))
    lr = parse_linear_response(text)
    alpha = None
    if any(k[2] == 0.0 for k in lr):
        alpha = np.full((3, 3), 0.0 if symmetric else np.nan)
        for (a, b, w), v in lr.items():
            if w == 0.0:
                alpha[_AXES.index(a), _AXES.index(b)] = v
    dipole = None
    moments = getattr(data, "moments", None)
    if moments is not None and len(moments) > 1:
        dipole = np.asarray(moments[1], dtype=float) / DEBYE_PER_AU
    coords = np.asarray(data.atomcoords[-1], dtype=float) * BOHR_PER_ANGSTROM
    wall = _WALL.search(text)
    cpu = _CPU.search(text)
    return DaltonResult(
        path=path, title=title, mol_id=int(mid.group(1)) if mid else None, method=method,
        xc=xc, basis=basis, energy=energy, point_group=point_group,
        atomic_numbers=np.asarray(data.atomnos, dtype=np.int64), coords_bohr=coords,
        n_basis=int(data.nbasis) if hasattr(data, "nbasis") else None, dipole=dipole,
        alpha=alpha, beta=beta, qr=qr, wall_s=_seconds(wall.group(1)) if wall else None,
        cpu_s=_seconds(cpu.group(1)) if cpu else None,
        version=f"DALTON {meta.get('package_version', 'unknown')}")


# ----------------------------------------------------------------------------- .mol files


@dataclass
class MolFile:
    """A DALTON ``.mol`` input: basis, titles, charge and the full geometry in bohr ``(n, 3)``."""

    basis: str
    title: tuple[str, str]
    charge: int
    atomic_numbers: NDArray[np.int64]
    coords_bohr: NDArray[np.float64]


def _expand_symmetry(xyz: NDArray[np.float64], generators: Sequence[str]) -> list[NDArray[np.float64]]:
    ops = [np.ones(3)]
    for g in generators:
        s = np.ones(3)
        for ax in g.upper():
            s[_AXES.index(ax)] = -1.0
        ops = ops + [o * s for o in ops]
    images: list[NDArray[np.float64]] = []
    for o in ops:
        p = xyz * o
        if not any(np.allclose(p, q, atol=1e-6) for q in images):
            images.append(p)
    return images


def read_mol(path: str | Path) -> MolFile:
    """Read a ``.mol`` file (keyword format, or the old fixed format of the DALTON test suite).

    Symmetry generators are expanded so all atoms are returned; ``Angstrom`` input is
    converted to bohr.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    if not lines:
        raise DaltonParseError(f"{path}: empty .mol file")
    first = lines[0].strip().upper()
    if first in ("BASIS", "ATOMBASIS"):
        basis, title, i = lines[1].strip(), (lines[2].strip(), lines[3].strip()), 4
    else:
        raise DaltonParseError(f"{path}: only BASIS-style .mol files are supported")
    head = lines[i]
    i += 1
    angstrom = "angstrom" in head.lower()
    charge = 0
    if "=" in head:
        kv = dict(re.findall(r"(\w+)=(\S+)", head))
        ntypes = int(kv.get("Atomtypes", kv.get("AtomTypes", "0")))
        charge = int(float(kv.get("Charge", "0")))
        gens = kv.get("Generators", "0")
        ngen = int(gens)
        generators = head.split("Generators=")[1].split()[1:1 + ngen] if ngen else []
    else:  # old fixed format: ntypes, number of generators, generators
        parts = head.split()
        ntypes, ngen = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        generators = parts[2:2 + ngen]
    zs: list[int] = []
    coords: list[NDArray[np.float64]] = []
    for _ in range(ntypes):
        type_line = lines[i]
        i += 1
        if "=" in type_line:
            kv = dict(re.findall(r"(\w+)=(\S+)", type_line))
            z, natoms = int(round(float(kv["Charge"]))), int(kv["Atoms"])
        else:
            parts = type_line.split()
            z, natoms = int(round(float(parts[0]))), int(parts[1])
        for _ in range(natoms):
            parts = lines[i].split()
            i += 1
            xyz = np.array([_f(p) for p in parts[1:4]])
            for img in _expand_symmetry(xyz, generators):
                zs.append(z)
                coords.append(img)
    xyz_all = np.array(coords, dtype=float).reshape(-1, 3)
    if angstrom:
        xyz_all = xyz_all * BOHR_PER_ANGSTROM
    return MolFile(basis=basis, title=title, charge=charge,
                   atomic_numbers=np.array(zs, dtype=np.int64), coords_bohr=xyz_all)


# ----------------------------------------------------------------------------- frames


def align_rotation(z_out: Sequence[int], xyz_out: NDArray[np.float64], z_ref: Sequence[int],
                   xyz_ref: NDArray[np.float64], tol: float = 1e-3) -> NDArray[np.float64] | None:
    """Rotation ``R`` with ``ref ≈ R @ out`` (both centred), or None if the geometries differ.

    The output's atoms are expected in :func:`~qmlrp.labels.dalton_write.element_groups` order
    of the reference (the order of a qmlrp-written ``.mol``); plain order is tried as well.
    ``tol`` is the largest allowed atom deviation (same unit as the coordinates).
    """
    z_out = np.asarray(z_out, dtype=int)
    a = np.asarray(xyz_out, dtype=float).reshape(-1, 3)
    ref = np.asarray(xyz_ref, dtype=float).reshape(-1, 3)
    orders = [np.arange(len(z_ref)), np.array([i for _, idx in element_groups(z_ref) for i in idx])]
    for order in orders:
        if len(order) != len(z_out) or not np.array_equal(np.asarray(z_ref)[order], z_out):
            continue
        b = ref[order]
        a0, b0 = a - a.mean(0), b - b.mean(0)
        u, _, vt = np.linalg.svd(a0.T @ b0)
        d = np.sign(np.linalg.det(u @ vt))
        rot = (u @ np.diag([1.0, 1.0, d]) @ vt).T
        if np.max(np.linalg.norm(a0 @ rot.T - b0, axis=1)) <= tol:
            return rot
    return None


def rotate_tensors(rot: NDArray[np.float64], dipole: NDArray[np.float64] | None,
                   alpha: NDArray[np.float64] | None, beta: NDArray[np.float64]
                   ) -> tuple[NDArray[np.float64] | None, NDArray[np.float64] | None,
                              NDArray[np.float64]]:
    """Rotate μ (3,), α (3,3) and β (3,3,3) by ``rot``."""
    mu = None if dipole is None else rot @ dipole
    al = None if alpha is None else rot @ alpha @ rot.T
    be = np.einsum("ia,jb,kc,abc->ijk", rot, rot, rot, beta)
    return mu, al, be


def outputs_to_rows(paths: Sequence[str | Path], table: pd.DataFrame | None = None
                    ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Label rows for DALTON outputs, plus ``(file, reason)`` for those that could not be used.

    With ``table`` (the QM9 table: id, smiles, n_atoms, atomic_numbers, coordinates in Å) the
    molecule id found in the title card or file name is looked up, its SMILES filled in, and
    the tensors are rotated into the table's frame if DALTON reoriented the molecule; a
    geometry that does not match the table's is a failure. Outputs without a qmlrp id get
    negative ids -1, -2, ... in file order.
    """
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    by_id = table.set_index("id") if table is not None else None
    anon = 0
    for p in paths:
        try:
            res = read_output(p)
        except DaltonParseError as err:
            failures.append((str(p), str(err)))
            continue
        dipole, alpha, beta = res.dipole, res.alpha, res.beta
        smiles = ""
        if res.mol_id is None:
            anon += 1
            mol_id = -anon
        else:
            mol_id = res.mol_id
        if by_id is not None and res.mol_id is not None:
            if res.mol_id not in by_id.index:
                failures.append((str(p), f"id {res.mol_id} not in the molecule table"))
                continue
            ref = by_id.loc[res.mol_id]
            smiles = str(ref["smiles"])
            ref_xyz = np.asarray(ref["coordinates"], dtype=float).reshape(-1, 3) * BOHR_PER_ANGSTROM
            rot = align_rotation(res.atomic_numbers, res.coords_bohr,
                                 list(ref["atomic_numbers"]), ref_xyz)
            if rot is None:
                failures.append((str(p), f"geometry differs from table id {res.mol_id}"))
                continue
            if not np.allclose(rot, np.eye(3), atol=1e-8):
                dipole, alpha, beta = rotate_tensors(rot, dipole, alpha, beta)
        bpar = beta_parallel(beta, dipole) if dipole is not None else float("nan")
        rows.append(records.make_row(
            mol_id=mol_id, smiles=smiles, n_atoms=len(res.atomic_numbers), method=res.method,
            xc=res.xc, basis=res.basis, grid_level=None, density_fit=False, energy=res.energy,
            dipole=dipole, alpha=alpha, beta=beta, beta_parallel=bpar,
            beta_vec=float(np.linalg.norm(beta_vector(beta))), n_basis=res.n_basis,
            cphf_residual=None, wall_s=res.wall_s, cpu_s=res.cpu_s, source="dalton",
            program=res.version, source_file=str(p)))
    return rows, failures
