"""On-disk store of featurized QM9 (``data/features/``) and fast batch access.

Layout (Parquet, zstd):

* ``molecules.parquet``: id, n_atoms, n_bonds, bond_origin (``template`` | ``geometry``)
* ``atoms.parquet``: the 21 atom features (one-hot/count columns int8, Gasteiger charge float32),
  ring_mask (int64), x, y, z (float32, Angstrom); molecules stacked in ``molecules`` order
* ``bonds.parquet``: i, j (int8 local indices, i < j), bond_type (int8)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qmlrp.errors import QmlrpError
from qmlrp.features.batch import GraphBatch
from qmlrp.features.graph import MolecularGraph
from qmlrp.features.layout import ATOM_FEATURES, N_ATOM_FEATURES
from qmlrp.features.pairs import expand_pairs
from qmlrp.io import read_parquet

FLOAT_ATOM_COLUMNS = {"gasteiger_charge"}


def write_store(directory: str | Path, ids: np.ndarray, graphs: Sequence[MolecularGraph], origins: Sequence[str]) -> None:
    """Write featurized molecules to ``directory`` atomically (a sibling temp dir, then rename)."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n_atoms = np.array([g.n_atoms for g in graphs], dtype=np.int16)
    n_bonds = np.array([len(g.bonds) for g in graphs], dtype=np.int16)
    pq.write_table(pa.table({"id": np.asarray(ids, dtype=np.int64), "n_atoms": n_atoms, "n_bonds": n_bonds,
                             "bond_origin": pa.array(list(origins), pa.dictionary(pa.int8(), pa.string()))}),
                   tmp / "molecules.parquet", compression="zstd")
    feats = np.concatenate([g.atom_features for g in graphs]) if graphs else np.zeros((0, N_ATOM_FEATURES), np.float32)
    coords = np.concatenate([g.coordinates for g in graphs]) if graphs else np.zeros((0, 3), np.float32)
    columns: dict[str, np.ndarray] = {}
    for k, name in enumerate(ATOM_FEATURES):
        columns[name] = feats[:, k].astype(np.float32 if name in FLOAT_ATOM_COLUMNS else np.int8)
    columns["ring_mask"] = np.concatenate([g.ring_masks for g in graphs]) if graphs else np.zeros(0, np.int64)
    for axis, name in enumerate("xyz"):
        columns[name] = coords[:, axis].astype(np.float32)
    pq.write_table(pa.table(columns), tmp / "atoms.parquet", compression="zstd")
    bonds = np.concatenate([g.bonds for g in graphs]) if graphs else np.zeros((0, 2), np.int16)
    bond_types = np.concatenate([g.bond_types for g in graphs]) if graphs else np.zeros(0, np.int8)
    pq.write_table(pa.table({"i": bonds[:, 0].astype(np.int8), "j": bonds[:, 1].astype(np.int8),
                             "bond_type": bond_types.astype(np.int8)}), tmp / "bonds.parquet", compression="zstd")
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


class FeatureStore:
    """All featurized molecules in memory as flat arrays; :meth:`batch` builds ragged batches.

    Memory: about 100 bytes per atom (float32 features, coordinates, ring masks), ~0.25 GB for QM9.
    """

    def __init__(self, ids: np.ndarray, n_atoms: np.ndarray, n_bonds: np.ndarray, atom_features: np.ndarray,
                 coordinates: np.ndarray, ring_masks: np.ndarray, bonds: np.ndarray, bond_types: np.ndarray,
                 bond_origin: np.ndarray | None = None) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.n_atoms = np.asarray(n_atoms, dtype=np.int64)
        self.n_bonds = np.asarray(n_bonds, dtype=np.int64)
        self.atom_offsets = np.concatenate([[0], np.cumsum(self.n_atoms)]).astype(np.int64)
        self.bond_offsets = np.concatenate([[0], np.cumsum(self.n_bonds)]).astype(np.int64)
        self.atom_features = atom_features
        self.coordinates = coordinates
        self.ring_masks = ring_masks
        self.bonds = bonds
        self.bond_types = bond_types
        self.bond_origin = bond_origin
        self._position = {int(i): k for k, i in enumerate(self.ids)}

    @classmethod
    def open(cls, directory: str | Path) -> FeatureStore:
        """Load the store written by :func:`write_store`."""
        directory = Path(directory)
        if not (directory / "molecules.parquet").exists():
            raise QmlrpError(f"{directory}: no featurized molecules (run `dvc repro featurize` first)")
        hint = "run `dvc repro featurize` or `dvc pull`"
        mols = read_parquet(directory / "molecules.parquet", ["id", "n_atoms", "n_bonds", "bond_origin"], hint)
        atoms = read_parquet(directory / "atoms.parquet", [*ATOM_FEATURES, "ring_mask", "x", "y", "z"], hint)
        bonds = read_parquet(directory / "bonds.parquet", ["i", "j", "bond_type"], hint)
        n_atoms, n_bonds = mols.column("n_atoms").to_numpy(), mols.column("n_bonds").to_numpy()
        if int(n_atoms.sum()) != atoms.num_rows or int(n_bonds.sum()) != bonds.num_rows:
            raise QmlrpError(f"{directory}: inconsistent store ({int(n_atoms.sum())} atoms and {int(n_bonds.sum())} "
                             f"bonds listed, {atoms.num_rows} and {bonds.num_rows} stored; {hint})")
        features = np.stack([atoms.column(name).to_numpy().astype(np.float32) for name in ATOM_FEATURES], axis=1)
        coords = np.stack([atoms.column(a).to_numpy() for a in "xyz"], axis=1).astype(np.float32)
        return cls(
            ids=mols.column("id").to_numpy(),
            n_atoms=n_atoms,
            n_bonds=n_bonds,
            atom_features=features,
            coordinates=coords,
            ring_masks=atoms.column("ring_mask").to_numpy(),
            bonds=np.stack([bonds.column("i").to_numpy(), bonds.column("j").to_numpy()], axis=1).astype(np.int64),
            bond_types=bonds.column("bond_type").to_numpy().astype(np.int8),
            bond_origin=np.asarray(mols.column("bond_origin").to_pylist()),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Positions in the store of QM9 ``ids``; raises QmlrpError for unknown ids."""
        try:
            return np.array([self._position[int(i)] for i in ids], dtype=np.int64)
        except KeyError as err:
            raise QmlrpError(f"molecule {err.args[0]} is not in the feature store") from None

    def _ranges(self, offsets: np.ndarray, counts: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Concatenated index ranges offsets[p] .. offsets[p] + counts[p] for each position p."""
        lengths = counts[positions]
        starts = np.repeat(offsets[positions] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        return starts + np.arange(int(lengths.sum()))

    def graph(self, position: int) -> MolecularGraph:
        """The molecule at ``position`` as a :class:`MolecularGraph`."""
        a = slice(self.atom_offsets[position], self.atom_offsets[position + 1])
        b = slice(self.bond_offsets[position], self.bond_offsets[position + 1])
        return MolecularGraph(self.atom_features[a], self.bonds[b].astype(np.int16), self.bond_types[b],
                              self.ring_masks[a], self.coordinates[a])

    def atom_coordinates(self, positions: np.ndarray | Sequence[int]) -> np.ndarray:
        """(n_atoms, 3) float32 coordinates (Angstrom, as ingested) of the molecules at ``positions``,
        stacked in the atom order of :meth:`batch` for the same positions."""
        positions = np.asarray(positions, dtype=np.int64)
        return np.asarray(self.coordinates[self._ranges(self.atom_offsets, self.n_atoms, positions)], np.float32)

    def batch(self, positions: np.ndarray | Sequence[int]) -> GraphBatch:
        """Ragged batch of the molecules at ``positions``, pair features expanded on the fly."""
        positions = np.asarray(positions, dtype=np.int64)
        atom_rows = self._ranges(self.atom_offsets, self.n_atoms, positions)
        bond_rows = self._ranges(self.bond_offsets, self.n_bonds, positions)
        n_atoms = self.n_atoms[positions]
        bond_molecule = np.repeat(np.arange(len(positions), dtype=np.int32), self.n_bonds[positions])
        pair_features, pair_atoms, pair_molecule = expand_pairs(
            n_atoms, self.coordinates[atom_rows], self.ring_masks[atom_rows], bond_molecule,
            self.bonds[bond_rows], self.bond_types[bond_rows])
        return GraphBatch(
            atom_features=self.atom_features[atom_rows],
            pair_features=pair_features,
            pair_atoms=pair_atoms,
            atom_molecule=np.repeat(np.arange(len(positions), dtype=np.int32), n_atoms),
            pair_molecule=pair_molecule,
            ids=self.ids[positions],
        )
