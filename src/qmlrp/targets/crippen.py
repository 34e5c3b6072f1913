"""The Crippen logP target: an additive quantity with known per-atom contributions (the ground truth
against which atom relevance is scored, :mod:`qmlrp.relevance.ground_truth`).

Wildman-Crippen logP is a sum of per-atom contributions (RDKit ``_CalcCrippenContribs``, hydrogens
included), recomputed from each molecule rebuilt out of ``data/qm9.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit.Chem import rdMolDescriptors

from qmlrp.errors import QmlrpError
from qmlrp.features.molecule import build_molecule
from qmlrp.features.store import FeatureStore
from qmlrp.targets import get_target

CRIPPEN_TARGET = get_target("crippen")


@dataclass(frozen=True)
class CrippenData:
    """Per-atom Crippen logP contributions aligned with the store's atoms.

    Attributes:
        positions: (n,) store positions of the molecules that could be built.
        target: (n,) molecular logP (sum of contributions).
        contributions: list of (n_atoms_m,) per-atom contributions, store atom order.
    """

    positions: np.ndarray
    target: np.ndarray
    contributions: list[np.ndarray]


def crippen_data(store: FeatureStore, table: str | Path) -> CrippenData:
    """Crippen contributions of every store molecule (rebuilt from ``data/qm9.parquet``).

    Molecules whose rebuilt atom count differs from the store's are skipped (none expected: the
    store was featurized from the same molecules, atoms in XYZ order).
    """
    frame = pd.read_parquet(table, columns=["id", "smiles", "atomic_numbers", "coordinates"]).set_index("id")
    positions, target, contributions = [], [], []
    for pos, mol_id in enumerate(store.ids):
        if int(mol_id) not in frame.index:
            continue
        row = frame.loc[int(mol_id)]
        numbers = np.asarray(row["atomic_numbers"])
        try:
            mol, _ = build_molecule(numbers, np.asarray(row["coordinates"]).reshape(-1, 3), row["smiles"], str(mol_id))
        except QmlrpError:
            continue
        if mol.GetNumAtoms() != int(store.n_atoms[pos]):
            continue
        contrib = np.array([c[0] for c in rdMolDescriptors._CalcCrippenContribs(mol)], np.float64)
        positions.append(pos)
        target.append(contrib.sum())
        contributions.append(contrib)
    return CrippenData(np.array(positions, np.int64), np.array(target), contributions)
