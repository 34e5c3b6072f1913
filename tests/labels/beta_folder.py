"""Hand-made β label folders for the ``beta_data`` tests: real QM9 ids, made-up β values,
written with the project's record writer (:func:`qmlrp.labels.records.write_shard`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from qmlrp.labels.records import ensure_level, make_row, write_shard


def level(basis: str) -> dict[str, object]:
    return {"method": "rks", "xc": "b3lyp5", "basis": basis, "grid_level": 3, "density_fit": False,
            "auxbasis": None, "cart": False}


def write_labels(folder: Path, beta_parallel: Mapping[int, float], basis: str = "6-31g") -> Path:
    """A label folder with one row per id: β∥ as given (NaN allowed), |β_vec| = 2 |β∥| + 1."""
    ensure_level(folder, level(basis))
    rows = [make_row(mol_id=i, smiles="C", n_atoms=5, method="rks", xc="b3lyp5", basis=basis, grid_level=3,
                     density_fit=False, energy=-40.0, dipole=np.array([0.0, 0.0, 0.5]), alpha=np.eye(3) * 10.0,
                     beta=np.zeros(27), beta_parallel=b, beta_vec=2.0 * abs(b) + 1.0 if np.isfinite(b) else 0.0,
                     n_basis=17, cphf_residual=1e-8, wall_s=1.0, cpu_s=1.0, source="pyscf", program="test")
            for i, b in beta_parallel.items()]
    write_shard(rows, folder)
    return folder
