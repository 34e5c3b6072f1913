"""Shared fixtures: QM9 molecules by index (from qm9pack), paths to shared/ material."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def qm9pack_frame() -> pd.DataFrame:
    from qmlrp.data.qm9pack_source import read_frame

    return read_frame().set_index("Index", drop=False)


@pytest.fixture(scope="session")
def qm9_record(qm9pack_frame):
    """Function: QM9 index -> parsed :class:`Qm9Record` (from qm9pack)."""
    from qmlrp.data.qm9pack_source import record_from_row

    return lambda index: record_from_row(qm9pack_frame.loc[index])


@pytest.fixture(scope="session")
def qm9_graph(qm9_record):
    """Function: QM9 index -> (record, MolecularGraph, RDKit mol)."""
    from qmlrp.features.graph import graph_from_mol
    from qmlrp.features.molecule import build_molecule

    def make(index: int):
        rec = qm9_record(index)
        mol, _ = build_molecule(rec.atomic_numbers, rec.coordinates, rec.smiles, rec.name)
        return rec, graph_from_mol(mol, rec.coordinates, rec.name), mol

    return make


def heavy_neighbours(mol, index: int) -> list[int]:
    return [n.GetIdx() for n in mol.GetAtomWithIdx(index).GetNeighbors() if n.GetAtomicNum() > 1]


def positions_of(numbers: np.ndarray, z: int) -> list[int]:
    return [int(k) for k in np.nonzero(np.asarray(numbers) == z)[0]]
