"""Molecules from user files for ``qmlrp predict`` (and ``qmlrp explain``): XYZ and SDF.

Each malformed file or record becomes a :class:`Failure` (one line naming it and the reason);
the other molecules of the call are still read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qmlrp.errors import InputError

SDF_SUFFIXES = (".sdf", ".mol", ".sd")
XYZ_SUFFIXES = (".xyz",)


@dataclass
class MoleculeInput:
    """One molecule to predict: atomic numbers (n,), coordinates (n, 3) Angstrom, optional SMILES;
    ``record``: its position in the file (1-based)."""

    file: str
    name: str
    atomic_numbers: np.ndarray
    coordinates: np.ndarray
    smiles: str | None = None
    record: int = 1


@dataclass
class Failure:
    """A file or record that cannot be predicted; ``record``: its position in the file (0: the file)."""

    file: str
    name: str
    reason: str
    record: int = 0

    def line(self) -> str:
        """``error: FILE [MOLECULE]: reason`` (one line)."""
        where = f"{self.file} [{self.name}]" if self.name else self.file
        return f"error: {where}: {self.reason}"


def read_sdf(path: Path) -> tuple[list[MoleculeInput], list[Failure]]:
    """Molecules of an SDF file; records RDKit cannot parse become failures."""
    from rdkit import Chem, RDLogger

    if not os.environ.get("QMLRP_VERBOSE"):  # set by `qmlrp --verbose`
        RDLogger.DisableLog("rdApp.*")
    molecules: list[MoleculeInput] = []
    failures: list[Failure] = []
    try:
        supplier = Chem.ForwardSDMolSupplier(str(path), removeHs=False, sanitize=True)
        records = list(supplier)
    except OSError as err:
        raise InputError(str(path), f"cannot read ({err.__class__.__name__})") from None
    if not records:
        raise InputError(str(path), "no molecules found")
    for k, mol in enumerate(records, start=1):
        default = f"{path.stem}#{k}" if len(records) > 1 else path.stem
        if mol is None:
            failures.append(Failure(str(path), default, f"record {k}: RDKit cannot parse the structure", k))
            continue
        name = mol.GetProp("_Name").strip() if mol.HasProp("_Name") and mol.GetProp("_Name").strip() else default
        if mol.GetNumConformers() == 0:
            failures.append(Failure(str(path), name, "no coordinates", k))
            continue
        coords = np.asarray(mol.GetConformer().GetPositions(), dtype=float)
        if not mol.GetConformer().Is3D() or np.allclose(coords[:, 2], 0.0):
            failures.append(Failure(str(path), name, "coordinates are not 3D", k))
            continue
        if any(atom.GetTotalNumHs(includeNeighbors=False) for atom in mol.GetAtoms()):
            failures.append(Failure(str(path), name, "implicit hydrogens: all atoms need 3D coordinates", k))
            continue
        numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)
        molecules.append(MoleculeInput(str(path), name, numbers, coords, Chem.MolToSmiles(mol), k))
    return molecules, failures


def read_molecules(path: str | Path) -> tuple[list[MoleculeInput], list[Failure]]:
    """Molecules of one file (by suffix); a malformed or unsupported file is one failure, and so
    is each record of it that cannot be read (the others are read)."""
    from qmlrp.data.xyz import read_xyz_records

    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(str(path), "is a folder, expected an XYZ or SDF file")
        if not path.is_file():
            raise InputError(str(path), "no such file")
        suffix = path.suffix.lower()
        if suffix in XYZ_SUFFIXES:
            records, bad = read_xyz_records(path)
            return ([MoleculeInput(str(path), r.name, np.asarray(r.atomic_numbers), np.asarray(r.coordinates, float),
                                   r.smiles, r.record) for r in records],
                    [Failure(str(path), b.name, b.reason, b.record) for b in bad])
        if suffix in SDF_SUFFIXES:
            return read_sdf(path)
        raise InputError(str(path), f"unsupported file type {suffix or '(none)'}; expected .xyz or .sdf")
    except InputError as err:
        return [], [Failure(str(path), "", str(err).removeprefix(f"{path}: "))]
