"""Every molecule's expanded pairs, computed once per run, for cheap host batches.

:func:`~qmlrp.features.pairs.expand_pairs` runs over the whole store once (in chunks); a batch
is then a few gathers of flat arrays instead of building adjacency powers every step. The values
are those of :meth:`FeatureStore.batch` bit for bit: the 12 binary pair columns are packed into
one uint16 per pair, the distance kept as the float32 it was computed as.

Memory: 6 bytes per pair (~1 kB per molecule, ~0.13 GB for QM9's ~21M pairs) and a table of
local pair indices for each molecule size up to the largest (a few kB). Building costs one pass of
``expand_pairs`` over the store (~40 CPU-us per molecule); :meth:`PairTable.of` keeps one table per
store object, so repeated ``fit`` calls on one store build it once.
"""

from __future__ import annotations

import weakref

import numpy as np

from qmlrp.features.layout import N_PAIR_FEATURES
from qmlrp.features.pairs import upper_pairs
from qmlrp.features.store import FeatureStore

N_FLAGS = N_PAIR_FEATURES - 1
"""The binary pair columns (bond type, graph distances, same ring); the last is the distance."""

_SHIFTS = np.arange(N_FLAGS, dtype=np.uint16)

_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated index ranges ``starts[k] .. starts[k] + lengths[k]`` (int64)."""
    lengths = np.asarray(lengths, np.int64)
    shift = np.repeat(np.asarray(starts, np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return shift + np.arange(int(lengths.sum()), dtype=np.int64)


class PairTable:
    """The store's pair features, packed, with per-molecule offsets.

    Args:
        store: the featurized molecules.
        chunk: molecules expanded per call of ``expand_pairs`` while building.
    """

    def __init__(self, store: FeatureStore, chunk: int = 2048) -> None:
        n = len(store)
        self.n_pairs = store.n_atoms * (store.n_atoms - 1) // 2
        self.offsets = np.concatenate([[0], np.cumsum(self.n_pairs)]).astype(np.int64)
        self.flags = np.zeros(int(self.offsets[-1]), np.uint16)
        self.distance = np.zeros(int(self.offsets[-1]), np.float32)
        for start in range(0, n, chunk):
            positions = np.arange(start, min(start + chunk, n))
            features = store.batch(positions).pair_features
            rows = slice(self.offsets[positions[0]], self.offsets[positions[-1] + 1])
            self.flags[rows] = (features[:, :N_FLAGS].astype(np.uint16) << _SHIFTS).sum(axis=1, dtype=np.uint16)
            self.distance[rows] = features[:, N_FLAGS]
        size = int(store.n_atoms.max()) + 1 if n else 1
        local = [upper_pairs(m) for m in range(size)]
        self.local_offsets = np.concatenate([[0], np.cumsum([li.size for li, _ in local])]).astype(np.int64)
        self.local = np.concatenate([np.stack(p, axis=1) for p in local]).astype(np.int32).reshape(-1, 2)

    @classmethod
    def of(cls, store: FeatureStore) -> PairTable:
        """The table of ``store``, built on first use and kept while the store lives."""
        table = _TABLES.get(store)
        if table is None:
            table = _TABLES[store] = cls(store)
        return table

    @property
    def nbytes(self) -> int:
        """Bytes held by the table."""
        return sum(a.nbytes for a in (self.n_pairs, self.offsets, self.flags, self.distance, self.local,
                                      self.local_offsets))

    def fill(self, positions: np.ndarray, n_atoms: np.ndarray, features: np.ndarray, pair_atoms: np.ndarray) -> int:
        """Write the pairs of the molecules at ``positions`` (with ``n_atoms`` atoms each, stacked in
        this order) into the first rows of ``features`` (P, 13) float32 and ``pair_atoms`` (P, 2)
        int32, as :meth:`FeatureStore.batch` orders them; returns the number of pairs written."""
        counts = self.n_pairs[positions]
        rows = ranges(self.offsets[positions], counts)
        p = rows.size
        features[:p, :N_FLAGS] = (self.flags[rows, None] >> _SHIFTS) & 1
        features[:p, N_FLAGS] = self.distance[rows]
        local = self.local[ranges(self.local_offsets[n_atoms], counts)]
        first_atom = np.cumsum(n_atoms) - n_atoms
        np.add(local, np.repeat(first_atom, counts)[:, None].astype(np.int32), out=pair_atoms[:p])
        return p
