"""Columns and units of the ingested QM9 table (``data/qm9.parquet``), one row per molecule."""

from __future__ import annotations

import pyarrow as pa

HARTREE_TO_EV: float = 27.211386245988
"""CODATA 2018 Hartree energy in eV."""

SCALAR_PROPERTIES: tuple[tuple[str, str], ...] = (
    # (column, description with unit), in the order of the QM9 XYZ comment line after "gdb <index>"
    ("rot_a_ghz", "rotational constant A, GHz"),
    ("rot_b_ghz", "rotational constant B, GHz"),
    ("rot_c_ghz", "rotational constant C, GHz"),
    ("dipole_debye", "dipole moment, Debye"),
    ("alpha_bohr3", "isotropic polarizability, a0^3"),
    ("homo_ha", "HOMO energy, Hartree"),
    ("lumo_ha", "LUMO energy, Hartree"),
    ("gap_ha", "HOMO-LUMO gap, Hartree"),
    ("r2_bohr2", "electronic spatial extent <R^2>, a0^2"),
    ("zpve_ha", "zero-point vibrational energy, Hartree"),
    ("u0_ha", "internal energy at 0 K, Hartree"),
    ("u298_ha", "internal energy at 298.15 K, Hartree"),
    ("h298_ha", "enthalpy at 298.15 K, Hartree"),
    ("g298_ha", "free energy at 298.15 K, Hartree"),
    ("cv_cal_mol_k", "heat capacity at 298.15 K, cal/(mol K)"),
)
SCALAR_COLUMNS: tuple[str, ...] = tuple(name for name, _ in SCALAR_PROPERTIES)

POLARIZABILITY_TENSOR: tuple[str, ...] = ("alpha_xx", "alpha_xy", "alpha_yy", "alpha_xz", "alpha_yz", "alpha_zz")
"""Static polarizability tensor components, a0^3 (qm9pack only; null for XYZ input)."""

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),            # QM9 index 1..133885
        pa.field("name", pa.string()),                          # dsgdb9nsd_000001
        pa.field("smiles", pa.string()),                        # GDB-17 SMILES (first SMILES of the XYZ file)
        pa.field("inchi", pa.string()),                         # GDB-17 InChI
        pa.field("smiles_relaxed", pa.string()),                # B3LYP-relaxed SMILES (XYZ input only)
        pa.field("inchi_relaxed", pa.string()),                 # B3LYP-relaxed InChI (XYZ input only)
        pa.field("n_atoms", pa.int16()),
        pa.field("atomic_numbers", pa.list_(pa.int8())),        # (n_atoms,), XYZ order
        pa.field("coordinates", pa.list_(pa.float64())),        # (3*n_atoms,) x0 y0 z0 x1 ..., Angstrom
        pa.field("mulliken_charges", pa.list_(pa.float64())),   # (n_atoms,), e
        pa.field("frequencies_cm1", pa.list_(pa.float64())),    # (3N-6 or 3N-5,), harmonic, cm^-1
        *(pa.field(name, pa.float64()) for name in SCALAR_COLUMNS),
        pa.field("zpve_ev", pa.float64()),                      # zero-point vibrational energy, eV
        *(pa.field(name, pa.float64()) for name in POLARIZABILITY_TENSOR),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)

SOURCE_ONLY_COLUMNS: dict[str, tuple[str, ...]] = {
    "qm9pack": ("smiles_relaxed", "inchi_relaxed"),
    "xyz": POLARIZABILITY_TENSOR,
}
"""Columns that a source cannot fill (left null); all other columns agree between sources."""
