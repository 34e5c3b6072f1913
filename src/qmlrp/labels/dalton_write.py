"""DALTON input files for static first-hyperpolarizability runs on a user's own cluster.

For each molecule a pair ``qm9_<id>.dal`` / ``qm9_<id>.mol`` is written; ``dalton qm9_<id>``
then produces ``qm9_<id>.out``, which :mod:`qmlrp.labels.dalton_read` turns into label rows.
``dalton_jobs.txt`` lists one command per molecule (``dalton -noarch qm9_<id>``, for a job
array or GNU parallel).

* ``.dal``: ``**WAVE FUNCTIONS`` with ``.DFT`` + functional (or ``.HF``), a tight SCF
  threshold, ``**RESPONSE`` / ``*QUADRATIC`` / ``.DIPLEN`` at the static frequency only, and
  ``.RUN PROPERTIES`` so the ground-state dipole (needed for β∥) is printed.
* ``.mol``: the basis, the qmlrp id in the first title card, ``Nosymmetry`` (so DALTON neither
  reorients the molecule nor reduces it by symmetry; tensors come out in the QM9 frame) and the
  geometry in Ångström, atoms grouped by element in order of first appearance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from qmlrp.errors import InputError
from qmlrp.labels.beta import Level

__all__ = [
    "DALTON_FUNCTIONALS",
    "dalton_basis_name",
    "dalton_functional",
    "dal_input",
    "mol_input",
    "element_groups",
    "input_stem",
    "write_inputs",
]

_SYMBOLS = ["X", "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si",
            "P", "S", "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
            "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr"]

#: PySCF functional name -> DALTON functional keyword.
DALTON_FUNCTIONALS: dict[str, str] = {
    "b3lyp5": "B3LYP",        # DALTON's B3LYP uses VWN5
    "b3lypg": "B3LYPg",       # Gaussian's B3LYP (VWN3/RPA), as used for QM9
    "slater,vwn5": "LDA",     # DALTON's LDA = Slater + VWN5
    "svwn5": "LDA",
    "lda,vwn5": "LDA",
    "pbe": "PBE",
    "pbe,pbe": "PBE",
    "pbe0": "PBE0",
    "blyp": "BLYP",
    "b3pw91": "B3PW91",
    "camb3lyp": "CAMB3LYP",
    "cam-b3lyp": "CAMB3LYP",
}


def dalton_functional(xc: str) -> str:
    """DALTON keyword of a PySCF functional name; raises InputError if there is no known match."""
    key = xc.lower().replace(" ", "")
    if key not in DALTON_FUNCTIONALS:
        raise InputError(f"xc={xc!r}", f"no known DALTON name (known: {sorted(DALTON_FUNCTIONALS)})")
    return DALTON_FUNCTIONALS[key]


def dalton_basis_name(basis: str) -> str:
    """DALTON basis-library spelling of a PySCF basis name.

    ``6-31g(2df,p)`` -> ``6-31G(2df,p)``, ``6-31++g**`` -> ``6-31++G**``, ``sto-3g`` -> ``STO-3G``,
    ``aug-cc-pvdz`` -> ``aug-cc-pVDZ``, ``def2-svp`` -> ``def2-SVP``; others unchanged.
    """
    b = basis.strip()
    low = b.lower()
    m = re.fullmatch(r"(\d-\d+\+{0,2})g(.*)", low)
    if m:
        return f"{m.group(1)}G{m.group(2)}"
    if re.fullmatch(r"sto-\dg", low):
        return low.upper()
    m = re.fullmatch(r"((?:[a-z]+-)?)cc-p(c?)v([dtq56])z", low)
    if m:
        return f"{m.group(1)}cc-p{m.group(2).upper()}V{m.group(3).upper()}Z"
    if low.startswith("def2-"):
        return "def2-" + b[5:].upper()
    return b


def dal_input(level: Level, *, frequencies: Sequence[float] = (0.0,), with_dipole: bool = True,
              scf_threshold: float = 1e-8, response_threshold: float = 1e-6) -> str:
    """Text of a ``.dal`` file for the static (or given-frequency) quadratic response β."""
    lines = ["**DALTON INPUT", ".RUN RESPONSE"]
    if with_dipole:
        lines.append(".RUN PROPERTIES")
    lines.append("**WAVE FUNCTIONS")
    if level.method == "rks":
        lines += [".DFT", f" {dalton_functional(level.xc)}"]
    else:
        lines.append(".HF")
    lines += ["*SCF INPUT", ".THRESHOLD", f" {scf_threshold:.1E}".replace("E", "D")]
    lines += ["**RESPONSE", "*QUADRATIC", ".DIPLEN", ".THCLR",
              f" {response_threshold:.1E}".replace("E", "D"),
              ".FREQUENCIES", f" {len(frequencies)}",
              " " + " ".join(f"{f:.6f}" for f in frequencies),
              "**END OF DALTON INPUT", ""]
    return "\n".join(lines)


def element_groups(atomic_numbers: Sequence[int]) -> list[tuple[int, list[int]]]:
    """``[(Z, [atom indices])]`` grouped by element in order of first appearance.

    This is the atom order of the written ``.mol`` (and of DALTON's output).
    """
    groups: dict[int, list[int]] = {}
    for i, z in enumerate(int(a) for a in atomic_numbers):
        groups.setdefault(z, []).append(i)
    return list(groups.items())


def mol_input(atomic_numbers: Sequence[int], coordinates: Sequence[float] | NDArray[np.float64],
              basis: str, *, title: str = "", comment: str = "", charge: int = 0,
              cart: bool = False) -> str:
    """Text of a ``.mol`` file; ``coordinates`` flattened ``(3n,)`` or ``(n, 3)`` in Ångström."""
    z = [int(a) for a in atomic_numbers]
    xyz = np.asarray(coordinates, dtype=float).reshape(-1, 3)
    if xyz.shape[0] != len(z) or not z:
        raise InputError(title or "molecule", f"{len(z)} atoms but {xyz.shape[0]} coordinate rows")
    groups = element_groups(z)
    head = f"Atomtypes={len(groups)} Charge={int(charge)} Angstrom Nosymmetry"
    if cart:
        head += " Cartesian"
    lines = ["BASIS", dalton_basis_name(basis), title[:72], comment[:72], head]
    for zz, idx in groups:
        if zz >= len(_SYMBOLS):
            raise InputError(title or "molecule", f"unsupported element Z={zz}")
        lines.append(f"Charge={float(zz):.1f} Atoms={len(idx)}")
        for k, i in enumerate(idx, start=1):
            label = f"{_SYMBOLS[zz]}{k}"[:4]
            x, y, w = xyz[i]
            lines.append(f"{label:<4s} {x:18.10f} {y:18.10f} {w:18.10f}")
    lines.append("")
    return "\n".join(lines)


def input_stem(mol_id: int) -> str:
    """File stem of the DALTON inputs of one molecule, e.g. ``qm9_000042``."""
    return f"qm9_{int(mol_id):06d}"


def write_inputs(molecules: pd.DataFrame, out_dir: str | Path, level: Level, *,
                 frequencies: Sequence[float] = (0.0,), with_dipole: bool = True,
                 charge: int = 0) -> list[tuple[Path, Path]]:
    """Write a ``.dal``/``.mol`` pair per row of ``molecules`` and ``dalton_jobs.txt``.

    Args:
        molecules: rows with ``id``, ``smiles``, ``atomic_numbers``, ``coordinates`` (Å).
        out_dir: folder to create.
        level: method, functional and basis (numerical PySCF settings are not transferred).

    Returns:
        The ``(dal, mol)`` paths, in row order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dal_text = dal_input(level, frequencies=frequencies, with_dipole=with_dipole)
    method = (f"{dalton_functional(level.xc)}" if level.method == "rks" else "HF")
    pairs: list[tuple[Path, Path]] = []
    jobs: list[str] = []
    for row in molecules.itertuples(index=False):
        stem = input_stem(row.id)
        mol_text = mol_input(row.atomic_numbers, row.coordinates, level.basis,
                             title=f"qmlrp id={int(row.id)} {getattr(row, 'smiles', '')}",
                             comment=f"{method}/{dalton_basis_name(level.basis)} static beta",
                             charge=charge, cart=level.cart)
        dal_path, mol_path = out / f"{stem}.dal", out / f"{stem}.mol"
        dal_path.write_text(dal_text)
        mol_path.write_text(mol_text)
        pairs.append((dal_path, mol_path))
        jobs.append(f"dalton -noarch {stem}")  # reads <stem>.dal + <stem>.mol, writes <stem>.out
    (out / "dalton_jobs.txt").write_text("\n".join(jobs) + ("\n" if jobs else ""))
    return pairs
