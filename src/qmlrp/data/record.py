"""One QM9 molecule as parsed from any source, before it becomes a table row."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qmlrp.data.schema import HARTREE_TO_EV, POLARIZABILITY_TENSOR, SCALAR_COLUMNS
from qmlrp.errors import InputError

ELEMENT_NUMBERS: dict[str, int] = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


@dataclass
class Qm9Record:
    """A parsed QM9 molecule.

    Attributes:
        id: QM9 index.
        atomic_numbers: (n,) int.
        coordinates: (n, 3) float, Angstrom.
        mulliken_charges: (n,) float, e.
        frequencies_cm1: (k,) float, cm^-1.
        scalars: the 15 QM9 scalar properties keyed by :data:`SCALAR_COLUMNS`.
        tensor: polarizability tensor components keyed by :data:`POLARIZABILITY_TENSOR` (may be empty).
    """

    id: int
    name: str
    smiles: str
    inchi: str
    atomic_numbers: np.ndarray
    coordinates: np.ndarray
    mulliken_charges: np.ndarray
    frequencies_cm1: np.ndarray
    scalars: dict[str, float]
    smiles_relaxed: str | None = None
    inchi_relaxed: str | None = None
    tensor: dict[str, float] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`InputError` naming the molecule if the record is inconsistent."""
        n = len(self.atomic_numbers)
        where = self.name or f"molecule {self.id}"
        if n == 0:
            raise InputError(where, "no atoms")
        if self.coordinates.shape != (n, 3):
            raise InputError(where, f"coordinates have shape {self.coordinates.shape}, expected ({n}, 3)")
        if len(self.mulliken_charges) != n:
            raise InputError(where, f"{len(self.mulliken_charges)} Mulliken charges for {n} atoms")
        if not np.all(np.isfinite(self.coordinates)):
            raise InputError(where, "non-finite coordinates")
        missing = [c for c in SCALAR_COLUMNS if c not in self.scalars]
        if missing:
            raise InputError(where, f"missing properties {missing}")
        if not self.smiles:
            raise InputError(where, "empty SMILES")

    def to_row(self) -> dict[str, object]:
        """Row for :data:`qmlrp.data.schema.SCHEMA`."""
        row: dict[str, object] = {
            "id": int(self.id),
            "name": self.name,
            "smiles": self.smiles,
            "inchi": self.inchi,
            "smiles_relaxed": self.smiles_relaxed,
            "inchi_relaxed": self.inchi_relaxed,
            "n_atoms": len(self.atomic_numbers),
            "atomic_numbers": np.asarray(self.atomic_numbers, dtype=np.int8),
            "coordinates": np.asarray(self.coordinates, dtype=np.float64).reshape(-1),
            "mulliken_charges": np.asarray(self.mulliken_charges, dtype=np.float64),
            "frequencies_cm1": np.asarray(self.frequencies_cm1, dtype=np.float64),
        }
        row.update({c: float(self.scalars[c]) for c in SCALAR_COLUMNS})
        row["zpve_ev"] = float(self.scalars["zpve_ha"]) * HARTREE_TO_EV
        row.update({c: self.tensor.get(c) for c in POLARIZABILITY_TENSOR})
        return row
