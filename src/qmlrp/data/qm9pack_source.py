"""Read QM9 from the CSV files shipped inside the PyPI package ``qm9pack``.

The package is located with :func:`importlib.util.find_spec` and never imported: its
``__init__`` imports ``pkg_resources``, which current setuptools no longer provides.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from qmlrp.data.record import ELEMENT_NUMBERS, Qm9Record
from qmlrp.data.schema import POLARIZABILITY_TENSOR, SCALAR_COLUMNS
from qmlrp.errors import InputError, QmlrpError

PARTS: tuple[str, ...] = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
POLARIZABILITY_FILE = "qm9_polarizability.csv"

# qm9pack column -> our scalar column (same order as the QM9 XYZ comment line)
SCALAR_SOURCE: dict[str, str] = dict(
    zip(
        (
            "RotA_GHz", "RotB_GHz", "RotC_GHz", "Dipole_debye", "Polarizability_bohr3", "HOMO_au",
            "LUMO_au", "HOMO_LUMO_gap_au", "R2_bohr2", "ZPVE_au", "InternalEnergy_0K_au",
            "InternalEnergy_298K_au", "Enthalphy_298K_au", "GibbsFreeEnergy_298K_au",
            "Heatcapacity_Cv_cal_mol_K",
        ),
        SCALAR_COLUMNS,
    )
)
TENSOR_SOURCE: dict[str, str] = dict(zip(("A_xx", "A_xy", "A_yy", "A_xz", "A_yz", "A_zz"), POLARIZABILITY_TENSOR))


def qm9pack_data_dir() -> Path:
    """Folder holding qm9pack's CSV files (without importing the package)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise QmlrpError("qm9pack is not installed (pip install qm9pack)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [p for p in (*PARTS, POLARIZABILITY_FILE) if not (folder / p).exists()]
    if missing:
        raise QmlrpError(f"{folder}: qm9pack data files missing: {', '.join(missing)}")
    return folder


def _floats(text: str) -> np.ndarray:
    """Parse a bracketed list such as ``[[1.0,2.],[3,4]]`` into a flat float array."""
    body = text.replace("[", "").replace("]", "").strip().strip(",")
    if not body:
        return np.zeros(0, dtype=np.float64)
    return np.array(body.split(","), dtype=np.float64)


def _elements(text: str) -> np.ndarray:
    symbols = [s.strip().strip("'\"") for s in text.strip("[]").split(",") if s.strip()]
    try:
        return np.array([ELEMENT_NUMBERS[s] for s in symbols], dtype=np.int8)
    except KeyError as err:
        raise ValueError(f"unknown element {err.args[0]!r}") from None


def read_frame(data_dir: Path | None = None) -> pd.DataFrame:
    """The raw qm9pack table (130,831 rows), polarizability tensor merged in by file name."""
    folder = data_dir or qm9pack_data_dir()
    frame = pd.concat([pd.read_csv(folder / part, dtype={"SMILES": str, "InChi": str}) for part in PARTS],
                      ignore_index=True)
    tensor = pd.read_csv(folder / POLARIZABILITY_FILE)
    # left join: a molecule without a tensor row keeps null components rather than vanishing
    return frame.merge(tensor, on="XYZ_file", how="left", validate="one_to_one")


def record_from_row(row: pd.Series) -> Qm9Record:
    """Turn one qm9pack row into a validated :class:`Qm9Record`; raise InputError naming it."""
    name = str(row["XYZ_file"]).removesuffix(".xyz")
    try:
        numbers = _elements(row["Elements"])
        coords = _floats(row["XYZ_Ang"]).reshape(-1, 3)
        record = Qm9Record(
            id=int(row["Index"]),
            name=name,
            smiles=str(row["SMILES"]),
            inchi=str(row["InChi"]),
            atomic_numbers=numbers,
            coordinates=coords,
            mulliken_charges=_floats(row["Mulliken_pop"]),
            frequencies_cm1=_floats(row["Harmonic_Freq_cmi"]),
            scalars={ours: float(row[theirs]) for theirs, ours in SCALAR_SOURCE.items()},
            tensor={ours: float(row[theirs]) for theirs, ours in TENSOR_SOURCE.items()
                    if theirs in row and pd.notna(row[theirs])},
        )
    except (ValueError, TypeError) as err:
        raise InputError(name, f"malformed qm9pack record ({err})") from None
    if int(row["N_atoms"]) != len(record.atomic_numbers):
        raise InputError(name, f"N_atoms={row['N_atoms']} but {len(record.atomic_numbers)} elements listed")
    record.validate()
    return record


def iter_records(frame: pd.DataFrame) -> Iterator[Qm9Record | InputError]:
    """Yield a record (or the InputError that says why it is malformed) per row of ``frame``."""
    for _, row in frame.iterrows():
        try:
            yield record_from_row(row)
        except InputError as err:
            yield err
