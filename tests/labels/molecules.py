"""Small hand-written molecules (Å) and params for the label_beta stage tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

BASE = {
    "O": ([8, 1, 1], [0.0, 0.0, 0.117, 0.0, 0.757, -0.469, 0.0, -0.757, -0.469]),
    "F": ([9, 1], [0.0, 0.0, 0.0, 0.0, 0.0, 0.917]),
    "C": ([6, 1, 1, 1, 1], [0.0, 0.0, 0.0, 0.629, 0.629, 0.629, -0.629, -0.629, 0.629,
                            -0.629, 0.629, -0.629, 0.629, -0.629, -0.629]),
    "N": ([7, 1, 1, 1], [0.0, 0.0, 0.0, 0.0, 0.94, 0.38, 0.81, -0.47, 0.38, -0.81, -0.47, 0.38]),
    "C=O": ([6, 8, 1, 1], [0.0, 0.0, -0.53, 0.0, 0.0, 0.68, 0.0, 0.94, -1.11, 0.0, -0.94, -1.11]),
}
RADICAL = ("[CH3]", [6, 1, 1, 1], [0.0, 0.0, 0.0, 1.08, 0.0, 0.0, -0.54, 0.94, 0.0, -0.54, -0.94, 0.0])
#: the water once stored with E = +112 Ha: one H 0.02 Å from O
SQUEEZED_WATER = ("O", [8, 1, 1], [0.0, 0.0, 0.117, 0.0, 0.02, 0.117, 0.0, -0.757, -0.469])


def molecule_table(n: int, radical_id: int | None = None, squeezed_id: int | None = None,
                   seed: int = 0) -> pd.DataFrame:
    """``n`` small closed-shell molecules (slightly jiggled copies), ids 1..n; optionally one
    radical and one squeezed water."""
    rng = np.random.default_rng(seed)
    names = list(BASE)
    rows = []
    for i in range(1, n + 1):
        if i == radical_id:
            smi, z, xyz = RADICAL
        elif i == squeezed_id:
            smi, z, xyz = SQUEEZED_WATER
        else:
            smi = names[(i - 1) % len(names)]
            z, xyz = BASE[smi]
        coords = np.asarray(xyz, dtype=float)
        if i != squeezed_id:
            coords = coords + rng.normal(scale=0.01, size=len(xyz))
        rows.append({"id": i, "smiles": smi, "n_atoms": len(z),
                     "atomic_numbers": np.asarray(z, dtype=np.int8),
                     "coordinates": coords, "alpha_bohr3": 0.0})
    return pd.DataFrame(rows)


def stage_params(tmp: Path, **over) -> dict:
    """A fast ``label_beta`` section (RHF/STO-3G, one worker) writing under ``tmp``."""
    p = {
        "method": "rhf", "basis": "sto-3g", "conv_tol": 1e-9,
        "input": str(tmp / "qm9.parquet"), "output": str(tmp / "labels" / "{level}"),
        "metrics": str(tmp / "metrics" / "label_beta.json"),
        "count": 6, "seed": 1, "max_atoms": None, "shard_size": 2, "workers": 1,
        "threads_per_worker": 1, "scheduler": "local", "progress": False,
    }
    p.update(over)
    return p
